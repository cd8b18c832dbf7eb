//! Which instant queries are cheap enough to evaluate on the thread that received them.
//!
//! Handing a query to the blocking pool and its answer back costs two thread wake-ups; on a
//! busy two-core machine each waits for a scheduler slot, and for a one-series query that was
//! a large part of the latency (and most of its tail). A query qualifies when it reads a local
//! engine (a cluster read waits on the network), has no subquery (whose inner steps multiply
//! the work), and its selectors together match at most [`MAX_SERIES`] series holding at most
//! [`MAX_SAMPLES`] samples in the ranges they read — an upper bound taken from the index
//! before anything is decoded (`Engine::estimate_samples`). Reading, evaluating and rendering
//! such a query takes well under a millisecond, about what the hand-off itself costs.

use promql_parser::parser::{Expr, VectorSelector};

use crate::storage::Engine;

use super::error::QueryError;
use super::selector::matcher_groups;

/// Most series the selectors of an inline query may match together.
pub(crate) const MAX_SERIES: usize = 16;
/// Most samples (upper bound from the index) the selectors of an inline query may read.
pub(crate) const MAX_SAMPLES: usize = 32_768;

/// Whether `e` holds a subquery anywhere.
pub(crate) fn has_subquery(e: &Expr) -> bool {
    match e {
        Expr::Subquery(_) | Expr::Extension(_) => true,
        Expr::Paren(p) => has_subquery(&p.expr),
        Expr::Unary(u) => has_subquery(&u.expr),
        Expr::Binary(b) => has_subquery(&b.lhs) || has_subquery(&b.rhs),
        Expr::Aggregate(a) => has_subquery(&a.expr) || a.param.as_deref().is_some_and(has_subquery),
        Expr::Call(c) => c.args.args.iter().any(|a| has_subquery(a)),
        Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_) => false,
    }
}

/// Whether the selectors, each with the time range `[mint, maxt]` it reads, stay within the
/// bounds above.
pub(crate) fn small_enough<'e>(
    engine: &Engine,
    reads: impl IntoIterator<Item = (&'e VectorSelector, i64, i64)>,
) -> Result<bool, QueryError> {
    let (mut series, mut samples) = (0usize, 0usize);
    for (vs, mint, maxt) in reads {
        for group in matcher_groups(vs)? {
            // Counted per group: `or` groups may overlap, which only overestimates.
            let Some(read) = engine.estimate_samples(
                &group,
                mint,
                maxt,
                MAX_SERIES - series,
                MAX_SAMPLES - samples,
            ) else {
                return Ok(false);
            };
            series += read.series;
            samples += read.samples;
        }
    }
    Ok(true)
}
