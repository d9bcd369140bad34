//! Host bindings for the `skewless:transform` world, generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "feature-transform",
});

pub(crate) use exports::skewless::transform::transformer as wit;
