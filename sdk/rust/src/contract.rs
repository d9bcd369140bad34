//! The WebAssembly side of the contract: bindings generated from `wit/`, and the glue that
//! turns a [`Transform`](crate::Transform) into the exported functions.

use crate::columns::Input;
use crate::signature::Spec;
use crate::{DType, Error, Transform};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "feature-transform",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "skewless_sdk::__private::bindings",
    });
}

pub(crate) use bindings::exports::skewless::transform::transformer as wit;

fn wit_dtype(dtype: DType) -> wit::Dtype {
    match dtype {
        DType::Bool => wit::Dtype::Boolean,
        DType::Int64 => wit::Dtype::Int64,
        DType::Float64 => wit::Dtype::Float64,
        DType::String => wit::Dtype::Utf8,
        DType::Timestamp => wit::Dtype::Timestamp,
        DType::Float32List => wit::Dtype::Float32List,
    }
}

fn wit_specs(specs: &[Spec]) -> Vec<wit::ColumnSpec> {
    specs
        .iter()
        .map(|s| wit::ColumnSpec {
            name: s.name.clone(),
            dtype: wit_dtype(s.dtype),
            nullable: s.nullable,
        })
        .collect()
}

/// The exported `describe`: the declared signature in contract form.
pub fn describe<T: Transform>() -> wit::Signature {
    let signature = T::signature();
    wit::Signature {
        inputs: wit_specs(&signature.inputs),
        outputs: wit_specs(&signature.outputs),
    }
}

/// The exported `transform`: wraps the batch, runs `T`, and lays the output out in
/// signature order, refusing an output that does not match the signature.
pub fn run<T: Transform>(batch: wit::Batch) -> Result<wit::Batch, wit::TransformError> {
    let signature = T::signature();
    let rows = batch.rows as usize;
    let input = Input::new(batch, &signature.inputs).map_err(to_wit)?;
    let output = T::transform(&input).map_err(to_wit)?;
    output.into_wit(rows, &signature.outputs).map_err(to_wit)
}

fn to_wit(e: Error) -> wit::TransformError {
    match e {
        Error::InvalidInput(m) => wit::TransformError::InvalidInput(m),
        Error::Computation(m) => wit::TransformError::Computation(m),
        Error::Other(m) => wit::TransformError::Other(m),
    }
}
