//! A real transform that also imports `acme:net/fetch`: the host must refuse it at load,
//! since nothing outside its input may influence a result.

#![allow(unsafe_code, reason = "raw wit-bindgen exports, as a guest without the SDK has")]

wit_bindgen::generate!({ path: ["../../../wit", "wit"], world: "acme:net/networked-transform" });

use exports::skewless::transform::transformer::{Batch, ColumnSpec, Dtype, Guest, Signature, TransformError};

struct Networked;

impl Guest for Networked {
    fn describe() -> Signature {
        Signature {
            inputs: vec![],
            outputs: vec![ColumnSpec { name: "body".into(), dtype: Dtype::Utf8, nullable: true }],
        }
    }

    fn transform(input: Batch) -> Result<Batch, TransformError> {
        let _ = acme::net::fetch::get("https://example.invalid/");
        Ok(input)
    }
}

export!(Networked);
