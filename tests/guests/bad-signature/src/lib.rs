//! Declares the same output column twice: the host must refuse it at load.

use skewless_sdk::{DType, Input, Output, Result, Signature, Transform, export};

#[derive(Debug)]
struct BadSignature;

impl Transform for BadSignature {
    fn signature() -> Signature {
        Signature::new()
            .input("x", DType::Float64)
            .output("y", DType::Float64)
            .output("y", DType::Int64)
    }

    fn transform(input: &Input) -> Result<Output> {
        Ok(Output::new(input.rows()))
    }
}

export!(BadSignature);
