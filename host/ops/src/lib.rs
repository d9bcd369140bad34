//! Skewless operations, shared by the server and the CLI: applying definitions and the
//! plans they make ([`serving`]), materialization with the registry's watermarks, the
//! served sample, verification (served rows recomputed through the offline path and
//! compared by bits), drift, and JSON ⇄ Arrow for the edges that speak JSON.
//!
//! This crate knows no HTTP: the server's routes and the CLI's commands are thin callers
//! of it. It reaches the one path only through `skewless-online` (the online half) and
//! `skewless-offline` (the backfill), never through wasmtime.

#![deny(missing_docs)]

pub mod drift;
mod error;
pub mod events;
pub mod json;
mod materialization;
pub mod sample;
pub mod serving;
pub mod verify;

pub use error::Error;
pub use materialization::{MaterializeError, plan_materialization, run_materialization};
pub use serving::{ApplyError, NoDefinitions, Serving, ServingError, apply};
