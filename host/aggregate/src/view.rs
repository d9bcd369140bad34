//! An aggregated feature view as the kernel runs it, compiled once from the definitions
//! for both callers: which event column each aggregate reads, the [`Spec`], the result
//! dtypes, and the source's allowed lateness. The backfill and the online store build
//! their events through [`ViewAggregates::event`], so they read columns alike.

use skewless_core::DType;
use skewless_core::aggregation::Function;
use skewless_core::assemble::Value;
use skewless_core::definitions::{Feature, FeatureView, Source};

use crate::function::{Aggregate, EventTime, Scalar};
use crate::timeline::{Event, Spec};

/// The kernel's view of one aggregated feature view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewAggregates {
    /// The view.
    pub name: String,
    /// The hop and each aggregate with its window.
    pub spec: Spec,
    /// The source columns the aggregations read ([`event_columns`]), in the source's
    /// order.
    pub columns: Vec<Feature>,
    /// Per aggregate: the index into `columns` it reads, or none for `count` of events.
    pub inputs: Vec<Option<usize>>,
    /// Per aggregate: its result dtype.
    pub outputs: Vec<DType>,
    /// The source's allowed lateness, µs (none: no event is too late).
    pub lateness: Option<i64>,
}

/// The source columns `view`'s aggregations read, once each, in the source's order.
pub fn event_columns(view: &FeatureView, source: &Source) -> Vec<Feature> {
    source
        .columns
        .iter()
        .filter(|c| {
            view.aggregations
                .iter()
                .any(|a| a.column.as_ref() == Some(&c.name))
        })
        .cloned()
        .collect()
}

impl ViewAggregates {
    /// Compiles a validated aggregated view; an error names the broken invariant (a view
    /// that validation should have refused).
    pub fn new(view: &FeatureView, source: &Source) -> Result<Self, String> {
        let columns = event_columns(view, source);
        let hop = view
            .hop
            .map(|h| h.micros())
            .ok_or_else(|| format!("aggregated view `{}` has no hop", view.name))?;
        let mut aggregates = Vec::new();
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for a in &view.aggregations {
            let function = Function::from_name(&a.function).ok_or_else(|| {
                format!("view `{}`: unknown function `{}`", view.name, a.function)
            })?;
            let input = match &a.column {
                None => None,
                Some(name) => Some(columns.iter().position(|c| &c.name == name).ok_or_else(
                    || format!("view `{}`: column `{name}` is not declared", view.name),
                )?),
            };
            let dtype = input.map(|i| columns[i].dtype);
            aggregates.push((
                Aggregate {
                    function,
                    input: dtype,
                },
                a.window.micros(),
            ));
            outputs.push(function.output(dtype));
            inputs.push(input);
        }
        Ok(Self {
            name: view.name.clone(),
            spec: Spec {
                hop,
                aggregates,
                inputs: inputs.clone(),
            },
            columns,
            inputs,
            outputs,
            lateness: source.allowed_lateness.map(|l| l.micros()),
        })
    }

    /// How far before a read its events can lie: the longest window and a hop.
    pub fn reach(&self) -> i64 {
        let longest = self
            .spec
            .aggregates
            .iter()
            .map(|(_, w)| *w)
            .max()
            .unwrap_or(0);
        longest.saturating_add(self.spec.hop)
    }

    /// The event with times `at` whose event column `c` reads `column(c)`: one value per
    /// column, however many aggregates read it.
    pub fn event<'a>(&self, at: EventTime, mut column: impl FnMut(usize) -> Value<'a>) -> Event {
        let values = (0..self.columns.len())
            .map(|c| Scalar::from_value(column(c)))
            .collect();
        Event { at, values }
    }

    /// A stable hash of everything that shapes the view's results: the columns read, the
    /// hop, each aggregate and window, the lateness. State kept under another one is not
    /// read back under this one.
    pub fn fingerprint(&self) -> u64 {
        let mut text = format!("hop={};late={:?};", self.spec.hop, self.lateness);
        for c in &self.columns {
            text.push_str(&format!("col={}:{};", c.name, c.dtype.name()));
        }
        for ((aggregate, window), input) in self.spec.aggregates.iter().zip(&self.inputs) {
            text.push_str(&format!(
                "agg={}:{:?}:{window};",
                aggregate.function.name(),
                input
            ));
        }
        skewless_core::key::fnv1a(text.as_bytes())
    }
}

impl Scalar {
    /// A column value as a scalar: numbers and strings; anything else (null, a type no
    /// aggregate reads) is none.
    pub fn from_value(value: Value<'_>) -> Option<Scalar> {
        match value {
            Value::Int64(v) => Some(Scalar::Int(v)),
            Value::Float64(v) => Some(Scalar::Float(v)),
            Value::String(v) => Some(Scalar::Str(v.into())),
            _ => None,
        }
    }

    /// The scalar as a column value.
    pub fn value(&self) -> Value<'_> {
        match self {
            Scalar::Int(v) => Value::Int64(*v),
            Scalar::Float(v) => Value::Float64(*v),
            Scalar::Str(v) => Value::String(v),
        }
    }
}
