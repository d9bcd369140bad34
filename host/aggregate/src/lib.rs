//! The window aggregation kernel of Skewless.
//!
//! One `init / update / merge / finalize` per function ([`Aggregate`]), the same code for
//! the online tiles and for the offline backfill, so an aggregate served at `t` has the
//! bits of the one the backfill computes at `t`. Every state is exact and its merge is
//! commutative and associative: the value depends only on the set of events counted,
//! never on push order, batch boundaries, partitioning or threads (see
//! docs/aggregations.md). Which events count at `t` is [`window`].

pub mod codec;
mod exact;
mod function;
mod hll;
pub mod timeline;
mod view;
pub mod window;

pub use exact::{Exact, SCALE, round_ratio, round_sqrt_ratio};
pub use function::{Aggregate, Error, EventTime, Function, Input, Moments, Scalar, State};
pub use hll::{Hll, hash};
pub use timeline::{Event, ReadError, Spec, Timeline, sweep};
pub use view::{ViewAggregates, event_columns};
pub use window::Window;

#[cfg(test)]
mod tests;
