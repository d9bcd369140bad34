//! The string kernel the engine benchmarks time, identical to its native twin in
//! `benches/lib.rs`: ASCII upper-casing and byte length.

use skewless_sdk::{DType, Input, Output, Result, Signature, StringColumn, Transform, ValuesColumn, export};

#[derive(Debug)]
struct StringKernel;

impl Transform for StringKernel {
    fn signature() -> Signature {
        Signature::new()
            .input("s", DType::String)
            .output("upper", DType::String)
            .output("len", DType::Int64)
    }

    fn transform(input: &Input) -> Result<Output> {
        let rows = input.rows();
        let s = input.string("s")?;
        let mut upper = StringColumn::with_capacity(rows, s.total_bytes());
        let mut len = Vec::with_capacity(rows);
        let mut scratch = String::new();
        for i in 0..rows {
            let value = s.value(i);
            if s.validity().is_valid(i) {
                scratch.clear();
                scratch.push_str(value);
                scratch.make_ascii_uppercase();
                upper.push_str(&scratch);
            } else {
                upper.push_null();
            }
            len.push(value.len() as i64);
        }
        Ok(Output::new(rows)
            .string("upper", upper)
            .int64("len", ValuesColumn::from_values(len).and_validity(s.validity())))
    }
}

export!(StringKernel);
