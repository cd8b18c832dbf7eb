//! PromQL evaluation over the storage engine, with Prometheus 2.42's semantics.
//!
//! Queries are parsed by the `promql-parser` crate and evaluated here: [`QueryEngine::instant`]
//! at one time, [`QueryEngine::range`] at every step of a range. Each selector's data is read
//! from storage once per query, covering every step (and its lookback, range, offset and `@`),
//! then sliced per step; so a query costs one storage read per selector.
//!
//! Semantics follow Prometheus 2.42 (`promql/engine.go`, `promql/functions.go`):
//! - an instant selector takes the newest sample in `[t - lookback, t]` (5 minutes by
//!   default); a staleness marker (the NaN with bits `0x7ff0000000000002`) ends the series;
//! - a range selector takes the samples in `[t - range, t]`, markers left out;
//! - `rate`/`increase`/`delta` extrapolate as `extrapolatedRate` does; aggregations sum plainly,
//!   `*_over_time` and `deriv` with Kahan compensation, as 2.42 does;
//! - the metric name is dropped by arithmetic, `bool` comparisons, math and range functions
//!   (except `last_over_time`), and kept by filters, `sort`, `label_*`, `topk`/`bottomk`.
//!
//! Extension (seed 003): `sum|avg|min|max|count(selector[range])` — an aggregation over a range
//! selector, which Prometheus rejects — is accepted and means the aggregate of all samples of
//! all matched series in the window: one value per evaluation time, without labels, and no
//! value where the window holds no sample. Only the whole query may have this form.
//!
//! Evaluation is synchronous and CPU-bound: call it from a blocking thread in async code,
//! except through [`QueryEngine::instant_inline`], which only evaluates queries it has found
//! cheap (see `inline`).

mod aggregate;
mod binary;
mod engine;
mod error;
mod eval;
pub(crate) mod functions;
mod inline;
mod instant_stream;
mod json;
mod json_points;
pub mod pushdown;
mod rollup;
mod rollup_edges;
pub(crate) mod selector;
mod series_eval;
pub mod source;
mod streaming;
mod value;

pub use engine::{QueryEngine, QueryLimits, QueryOptions, MAX_STEPS};
pub use error::QueryError;
pub use json::{
    format_sample_value, format_timestamp, render_data, render_data_bytes, render_data_into,
};
pub use source::{SeriesSource, Sourced};
pub use value::{QueryResult, Value, STALE_NAN_BITS};
