//! The float64 kernel the engine benchmarks time, identical to its native twin in
//! `benches/lib.rs`: `y = x * 1.5 + 2.0`.

use skewless_sdk::{DType, Input, Output, Result, Signature, Transform, export};

#[derive(Debug)]
struct F64Kernel;

impl Transform for F64Kernel {
    fn signature() -> Signature {
        Signature::new()
            .input("x", DType::Float64)
            .output("y", DType::Float64)
    }

    fn transform(input: &Input) -> Result<Output> {
        let x = input.float64("x")?;
        Ok(Output::new(input.rows()).float64("y", x.map(|v| v * 1.5 + 2.0)))
    }
}

export!(F64Kernel);
