//! The vocabulary of window aggregations shared by the definitions and the kernel
//! (`skewless-aggregate`): the functions, what each accepts and what it returns.

use crate::DType;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// Events, or non-null values of the column.
    Count,
    /// The exact sum, correctly rounded (int64 sums are exact or an error).
    Sum,
    /// The exact mean, correctly rounded.
    Mean,
    /// The least value (`-0.0` before `0.0`; any NaN makes it NaN).
    Min,
    /// The greatest value (`0.0` after `-0.0`; any NaN makes it NaN).
    Max,
    /// Population variance, correctly rounded from the exact value.
    VarPop,
    /// Sample variance (n − 1), correctly rounded; null below two values.
    VarSamp,
    /// Population standard deviation, the correctly rounded square root of the exact
    /// variance.
    StddevPop,
    /// Sample standard deviation; null below two values.
    StddevSamp,
    /// The value of the earliest event.
    First,
    /// The value of the latest event.
    Last,
    /// HyperLogLog estimate of the distinct values (about 1.6% standard error).
    ApproxCountDistinct,
}

impl Function {
    /// Every function, with its name in definitions.
    pub const NAMES: [(&'static str, Function); 14] = [
        ("count", Function::Count),
        ("sum", Function::Sum),
        ("mean", Function::Mean),
        ("min", Function::Min),
        ("max", Function::Max),
        ("var_pop", Function::VarPop),
        ("var_samp", Function::VarSamp),
        ("variance", Function::VarSamp),
        ("stddev_pop", Function::StddevPop),
        ("stddev_samp", Function::StddevSamp),
        ("stddev", Function::StddevSamp),
        ("first", Function::First),
        ("last", Function::Last),
        ("approx_count_distinct", Function::ApproxCountDistinct),
    ];

    /// The function named `name`.
    pub fn from_name(name: &str) -> Option<Function> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }

    /// Its canonical name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .expect("every function is named")
    }

    /// The dtypes its column may have; `count` alone also works without a column.
    pub fn accepts(self) -> &'static [DType] {
        use DType::{Float64, Int64, String};
        match self {
            Function::Count | Function::First | Function::Last | Function::ApproxCountDistinct => {
                &[Int64, Float64, String]
            }
            _ => &[Int64, Float64],
        }
    }

    /// The dtype of its result over a column of `input` (none: `count` of events).
    pub fn output(self, input: Option<DType>) -> DType {
        match self {
            Function::Count | Function::ApproxCountDistinct => DType::Int64,
            Function::Sum | Function::Min | Function::Max | Function::First | Function::Last => {
                input.unwrap_or(DType::Int64)
            }
            Function::Mean
            | Function::VarPop
            | Function::VarSamp
            | Function::StddevPop
            | Function::StddevSamp => DType::Float64,
        }
    }
}
