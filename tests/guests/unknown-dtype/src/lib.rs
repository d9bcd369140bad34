//! Built against a contract whose `dtype` enum has a case this host does not know
//! (`float16`), and declares an output of that type.

#![allow(unsafe_code, reason = "raw wit-bindgen exports, as a guest without the SDK has")]

wit_bindgen::generate!({ path: "wit", world: "feature-transform" });

use exports::skewless::transform::transformer::{Batch, ColumnSpec, Dtype, Guest, Signature, TransformError};

struct UnknownDtype;

impl Guest for UnknownDtype {
    fn describe() -> Signature {
        Signature {
            inputs: vec![],
            outputs: vec![ColumnSpec { name: "half".into(), dtype: Dtype::Float16, nullable: true }],
        }
    }

    fn transform(input: Batch) -> Result<Batch, TransformError> {
        Ok(input)
    }
}

export!(UnknownDtype);
