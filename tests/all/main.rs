//! Skewless end-to-end tests: one binary, a module per area.

mod support;

mod aggregations;
mod aggregations_online;
mod cache;
mod determinism;
mod differential;
mod engine_errors;
mod examples;
mod jobs;
mod materialize;
mod offline;
mod openapi;
mod plan;
mod redis;
mod redis_aggregates;
mod round_trip;
mod server;
mod verify;
