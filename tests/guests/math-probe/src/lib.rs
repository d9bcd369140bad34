//! The math probe: one output per libm function (and `sqrt`, which IEEE 754 rounds
//! correctly, as a control), so that a test can measure how far each language's math
//! library lands from Rust's. Twins: tests/polyglot/math_probe/{c,python,js}.

use skewless_sdk::{DType, Input, Output, Result, Signature, Transform, export};

/// The unary functions, in output order; `pow` and `atan2` follow them.
const UNARY: [(&str, fn(f64) -> f64); 12] = [
    ("sqrt", f64::sqrt),
    ("exp", f64::exp),
    ("expm1", f64::exp_m1),
    ("log", f64::ln),
    ("log1p", f64::ln_1p),
    ("log10", f64::log10),
    ("sin", f64::sin),
    ("cos", f64::cos),
    ("tan", f64::tan),
    ("atan", f64::atan),
    ("tanh", f64::tanh),
    ("cbrt", f64::cbrt),
];

#[derive(Debug)]
struct MathProbe;

impl Transform for MathProbe {
    fn signature() -> Signature {
        let mut s = Signature::new()
            .input("x", DType::Float64)
            .input("y", DType::Float64);
        for (name, _) in UNARY {
            s = s.output(name, DType::Float64);
        }
        s.output("pow", DType::Float64).output("atan2", DType::Float64)
    }

    fn transform(input: &Input) -> Result<Output> {
        let x = input.float64("x")?;
        let y = input.float64("y")?;
        let mut out = Output::new(input.rows());
        for (name, f) in UNARY {
            out = out.float64(name, x.map(f));
        }
        Ok(out
            .float64("pow", x.zip_map(&y, f64::powf))
            .float64("atan2", x.zip_map(&y, f64::atan2)))
    }
}

export!(MathProbe);
