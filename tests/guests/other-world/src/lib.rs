//! A component of another world (`acme:scoring`), not a Skewless transform.

#![allow(unsafe_code, reason = "raw wit-bindgen exports, as a guest without the SDK has")]

wit_bindgen::generate!({ path: "wit", world: "scoring" });

struct Scorer;

impl exports::acme::scoring::scorer::Guest for Scorer {
    fn score(x: f64) -> f64 {
        x * 2.0
    }
}

export!(Scorer);
