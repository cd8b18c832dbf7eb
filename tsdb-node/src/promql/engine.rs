//! Entry point: parsing, the data-loading plan, limits, and the step loop of range queries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::{AtModifier, Expr, VectorSelector};
use regex::Regex;

use crate::storage::{Engine, Labels};

use super::error::QueryError;
use super::eval::{duration_ms, offset_ms, Evaluator};
use super::functions::check_unique;
use super::functions::range::{max_over_time, min_over_time};
use super::selector::{node_key, Store};
use super::source::SeriesSource;
use super::value::{Elem, QueryResult, StepValue, Value};

/// Most steps a range query may have, as in Prometheus.
pub const MAX_STEPS: i64 = 11_000;

/// Bounds on what one query may cost, and evaluation defaults.
#[derive(Clone, Debug)]
pub struct QueryLimits {
    /// Most samples a query may read from storage plus hold in its result.
    pub max_samples: usize,
    /// Wall-clock budget of one query.
    pub timeout: Duration,
    /// How far back an instant selector looks for a sample (Prometheus: 5 minutes).
    pub lookback_delta_ms: i64,
    /// Step of subqueries written without one (`x[1h:]`); Prometheus uses its global
    /// evaluation interval, 1 minute by default.
    pub default_subquery_step_ms: i64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            lookback_delta_ms: 5 * 60_000,
            default_subquery_step_ms: 60_000,
        }
    }
}

/// Evaluates PromQL over a series source (the local engine, or the cluster).
pub struct QueryEngine {
    source: Arc<dyn SeriesSource>,
    limits: QueryLimits,
}

/// The aggregations accepted over a range selector (seed 003's shorthand).
#[derive(Clone, Copy, Debug, PartialEq)]
enum WindowOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
}

/// A parsed query.
enum Plan {
    Expr(Expr),
    /// `agg(selector[range])`: one value per step over all samples of all matched series in
    /// the window. `Expr` is the range selector.
    Window(WindowOp, Expr),
}

impl Plan {
    fn expr(&self) -> &Expr {
        match self {
            Plan::Expr(e) | Plan::Window(_, e) => e,
        }
    }
}

fn parse(query: &str) -> Result<Plan, QueryError> {
    match promql_parser::parser::parse(query) {
        Ok(e) => Ok(Plan::Expr(e)),
        Err(err) => window_shorthand(query).ok_or(QueryError::Parse(err)),
    }
}

/// Recognises `sum|avg|min|max|count ( <range selector> )`, which standard PromQL rejects. Only
/// the outer call is matched here; the inner selector is parsed by the PromQL parser.
fn window_shorthand(query: &str) -> Option<Plan> {
    let re = Regex::new(r"(?s)^\s*(sum|avg|min|max|count)\s*\((.*)\)\s*$").ok()?;
    let caps = re.captures(query)?;
    let op = match caps.get(1)?.as_str() {
        "sum" => WindowOp::Sum,
        "avg" => WindowOp::Avg,
        "min" => WindowOp::Min,
        "max" => WindowOp::Max,
        _ => WindowOp::Count,
    };
    match promql_parser::parser::parse(caps.get(2)?.as_str()) {
        Ok(e @ Expr::MatrixSelector(_)) => Some(Plan::Window(op, e)),
        _ => None,
    }
}

impl QueryEngine {
    pub fn new(engine: Arc<Engine>, limits: QueryLimits) -> Self {
        Self::with_source(engine, limits)
    }

    /// Evaluates over `source` instead of one local engine.
    pub fn with_source(source: Arc<dyn SeriesSource>, limits: QueryLimits) -> Self {
        QueryEngine { source, limits }
    }

    /// Where this engine reads series (also used by the metadata endpoints).
    pub fn source(&self) -> &Arc<dyn SeriesSource> {
        &self.source
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Evaluates `query` at `time_ms`.
    pub fn instant(&self, query: &str, time_ms: i64) -> Result<QueryResult, QueryError> {
        let plan = parse(query)?;
        let deadline = Instant::now() + self.limits.timeout;
        let store = self.load(plan.expr(), time_ms, time_ms)?;
        let ev = self.evaluator(&store, time_ms, time_ms, deadline);
        let value = match eval_plan(&ev, &plan, time_ms)? {
            StepValue::Scalar(v) => Value::Scalar(time_ms, v),
            StepValue::String(s) => Value::String(time_ms, s),
            StepValue::Vector(v) => {
                check_unique(&v)?;
                Value::Vector(v.into_iter().map(|e| (e.labels, time_ms, e.v)).collect())
            }
            StepValue::Matrix(m) => {
                let points: usize = m.iter().map(|s| s.points.len()).sum();
                self.check_samples(store.samples.saturating_add(points))?;
                Value::Matrix(m.into_iter().map(|s| (s.labels, s.points)).collect())
            }
        };
        Ok(QueryResult {
            value,
            warnings: store.warnings.clone(),
        })
    }

    /// Evaluates `query` at every `step_ms` from `start_ms` to `end_ms` (inclusive).
    pub fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::InvalidArgument(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::InvalidArgument(
                "end timestamp must not be before start time".into(),
            ));
        }
        if end_ms
            .checked_sub(start_ms)
            .is_none_or(|d| d / step_ms >= MAX_STEPS)
        {
            return Err(QueryError::InvalidArgument(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let plan = parse(query)?;
        match plan.expr() {
            Expr::MatrixSelector(_) | Expr::Subquery(_) | Expr::StringLiteral(_)
                if matches!(plan, Plan::Expr(_)) =>
            {
                return Err(QueryError::InvalidArgument(
                    "invalid expression type for range query, must be Scalar or instant Vector"
                        .into(),
                ))
            }
            _ => {}
        }
        let deadline = Instant::now() + self.limits.timeout;
        let store = self.load(plan.expr(), start_ms, end_ms)?;
        let ev = self.evaluator(&store, start_ms, end_ms, deadline);
        let mut series: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut points = store.samples;
        let mut ts = start_ms;
        while ts <= end_ms {
            ev.check_deadline()?;
            let elems = match eval_plan(&ev, &plan, ts)? {
                StepValue::Scalar(v) => vec![Elem {
                    labels: Labels::default(),
                    t: ts,
                    v,
                }],
                StepValue::Vector(v) => {
                    check_unique(&v)?;
                    v
                }
                other => {
                    return Err(QueryError::InvalidArgument(format!(
                        "invalid expression type {:?} for range query, must be Scalar or instant Vector",
                        other.kind()
                    )))
                }
            };
            points = points.saturating_add(elems.len());
            self.check_samples(points)?;
            for el in elems {
                series.entry(el.labels).or_default().push((ts, el.v));
            }
            match ts.checked_add(step_ms) {
                Some(next) => ts = next,
                None => break,
            }
        }
        Ok(QueryResult {
            value: Value::Matrix(series.into_iter().collect()),
            warnings: store.warnings.clone(),
        })
    }

    fn check_samples(&self, n: usize) -> Result<(), QueryError> {
        if n > self.limits.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    fn evaluator<'a>(
        &self,
        store: &'a Store,
        start: i64,
        end: i64,
        deadline: Instant,
    ) -> Evaluator<'a> {
        Evaluator {
            store,
            start,
            end,
            lookback: self.limits.lookback_delta_ms,
            default_step: self.limits.default_subquery_step_ms.max(1),
            deadline,
            max_samples: self.limits.max_samples,
        }
    }

    /// Reads every selector's data for the whole query in one storage call per selector.
    fn load(&self, expr: &Expr, start: i64, end: i64) -> Result<Store, QueryError> {
        let mut ranges: HashMap<usize, (&VectorSelector, i64, i64)> = HashMap::new();
        let planner = Planner {
            start,
            end,
            lookback: self.limits.lookback_delta_ms,
        };
        planner.walk(expr, start, end, &mut ranges);
        let mut store = Store::default();
        for (vs, mint, maxt) in ranges.into_values() {
            store.load(&*self.source, vs, mint, maxt, self.limits.max_samples)?;
        }
        Ok(store)
    }
}

fn eval_plan(ev: &Evaluator, plan: &Plan, ts: i64) -> Result<StepValue, QueryError> {
    match plan {
        Plan::Expr(e) => ev.eval(e, ts),
        Plan::Window(op, e) => {
            let StepValue::Matrix(m) = ev.eval(e, ts)? else {
                return Err(QueryError::exec("expected a range selector"));
            };
            let all: Vec<(i64, f64)> = m.into_iter().flat_map(|s| s.points).collect();
            if all.is_empty() {
                return Ok(StepValue::Vector(Vec::new()));
            }
            let sum = || all.iter().map(|p| p.1).sum::<f64>();
            let v = match op {
                WindowOp::Sum => sum(),
                WindowOp::Avg => sum() / all.len() as f64,
                WindowOp::Min => min_over_time(&all),
                WindowOp::Max => max_over_time(&all),
                WindowOp::Count => all.len() as f64,
            };
            Ok(StepValue::Vector(vec![Elem {
                labels: Labels::default(),
                t: ts,
                v,
            }]))
        }
    }
}

/// Works out which time range each selector needs over the whole query.
struct Planner {
    start: i64,
    end: i64,
    lookback: i64,
}

impl Planner {
    /// The evaluation times `[lo, hi]` of a node, given its `@`.
    fn times(&self, at: &Option<AtModifier>, lo: i64, hi: i64) -> (i64, i64) {
        match at {
            None => (lo, hi),
            Some(AtModifier::Start) => (self.start, self.start),
            Some(AtModifier::End) => (self.end, self.end),
            Some(AtModifier::At(t)) => {
                let ms = match t.duration_since(std::time::UNIX_EPOCH) {
                    Ok(d) => duration_ms(&d),
                    Err(e) => -duration_ms(&e.duration()),
                };
                (ms, ms)
            }
        }
    }

    fn add<'e>(
        out: &mut HashMap<usize, (&'e VectorSelector, i64, i64)>,
        vs: &'e VectorSelector,
        mint: i64,
        maxt: i64,
    ) {
        let e = out.entry(node_key(vs)).or_insert((vs, mint, maxt));
        e.1 = e.1.min(mint);
        e.2 = e.2.max(maxt);
    }

    fn walk<'e>(
        &self,
        e: &'e Expr,
        lo: i64,
        hi: i64,
        out: &mut HashMap<usize, (&'e VectorSelector, i64, i64)>,
    ) {
        match e {
            Expr::VectorSelector(vs) => {
                let (a, b) = self.times(&vs.at, lo, hi);
                let off = offset_ms(&vs.offset);
                Self::add(
                    out,
                    vs,
                    a.saturating_sub(off).saturating_sub(self.lookback),
                    b.saturating_sub(off),
                );
            }
            Expr::MatrixSelector(ms) => {
                let (a, b) = self.times(&ms.vs.at, lo, hi);
                let off = offset_ms(&ms.vs.offset);
                Self::add(
                    out,
                    &ms.vs,
                    a.saturating_sub(off).saturating_sub(duration_ms(&ms.range)),
                    b.saturating_sub(off),
                );
            }
            Expr::Subquery(sq) => {
                let (a, b) = self.times(&sq.at, lo, hi);
                let off = offset_ms(&sq.offset);
                self.walk(
                    &sq.expr,
                    a.saturating_sub(off).saturating_sub(duration_ms(&sq.range)),
                    b.saturating_sub(off),
                    out,
                );
            }
            Expr::Paren(p) => self.walk(&p.expr, lo, hi, out),
            Expr::Unary(u) => self.walk(&u.expr, lo, hi, out),
            Expr::Binary(b) => {
                self.walk(&b.lhs, lo, hi, out);
                self.walk(&b.rhs, lo, hi, out);
            }
            Expr::Aggregate(a) => {
                self.walk(&a.expr, lo, hi, out);
                if let Some(p) = &a.param {
                    self.walk(p, lo, hi, out);
                }
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.walk(a, lo, hi, out);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::value::STALE_NAN_BITS;
    use crate::promql::QueryError;
    use crate::storage::{EngineOptions, Retention, Sample};

    fn engine(dir: &std::path::Path) -> Arc<Engine> {
        let mut opts = EngineOptions::new(dir);
        opts.wal_sync = false;
        opts.retention = Retention::keep_forever();
        let e = Engine::open(opts).unwrap();
        let mut batch = Vec::new();
        for i in 0..10i64 {
            for (host, base) in [("a", 1.0), ("b", 10.0)] {
                let v = if host == "a" && i == 5 {
                    f64::from_bits(STALE_NAN_BITS)
                } else {
                    base + i as f64
                };
                batch.push((
                    Labels::from_metric("m", &[("host", host)]),
                    Sample::new(i * 10_000, v),
                ));
            }
        }
        e.append_labeled(&batch).unwrap();
        Arc::new(e)
    }

    fn vector(r: QueryResult) -> Vec<(Labels, i64, f64)> {
        match r.value {
            Value::Vector(v) => v,
            other => panic!("expected vector, got {other:?}"),
        }
    }

    #[test]
    fn staleness_marker_ends_a_series_until_the_next_sample() {
        let dir = tempfile::tempdir().unwrap();
        let qe = QueryEngine::new(engine(dir.path()), QueryLimits::default());
        let at = |t| vector(qe.instant("m", t).unwrap());
        assert_eq!(at(45_000).len(), 2);
        let v = at(55_000);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0.get("host"), Some("b"));
        assert_eq!(at(60_000).len(), 2);
        // The marker is not a sample of range vectors either.
        let v = vector(
            qe.instant("count_over_time(m{host=\"a\"}[1m])", 60_000)
                .unwrap(),
        );
        assert_eq!(v[0].2, 6.0);
    }

    #[test]
    fn window_shorthand_aggregates_all_samples() {
        let dir = tempfile::tempdir().unwrap();
        let qe = QueryEngine::new(engine(dir.path()), QueryLimits::default());
        // Window [60s, 90s]: a has 7, 8, 9 (no marker), b has 16..19.
        let v = vector(qe.instant("count(m[30s])", 90_000).unwrap());
        assert_eq!(v, vec![(Labels::default(), 90_000, 8.0)]);
        let v = vector(qe.instant("avg(m[30s])", 90_000).unwrap());
        assert_eq!(
            v[0].2,
            (7.0 + 8.0 + 9.0 + 10.0 + 16.0 + 17.0 + 18.0 + 19.0) / 8.0
        );
        let v = vector(qe.instant("max(m[30s])", 90_000).unwrap());
        assert_eq!(v[0].2, 19.0);
        assert!(vector(qe.instant("sum(m[30s])", 900_000).unwrap()).is_empty());
        let r = qe.range("min(m[30s])", 30_000, 90_000, 30_000).unwrap();
        assert!(matches!(r.value, Value::Matrix(ref m) if m.len() == 1 && m[0].1.len() == 3));
    }

    #[test]
    fn errors_carry_prometheus_types() {
        let dir = tempfile::tempdir().unwrap();
        let qe = QueryEngine::new(engine(dir.path()), QueryLimits::default());
        let e = qe.instant("sum(", 0).unwrap_err();
        assert_eq!(e.error_type(), "bad_data");
        assert_eq!(
            qe.range("m", 0, 10, 0).unwrap_err().error_type(),
            "bad_data"
        );
        assert_eq!(
            qe.range("m[1m]", 0, 10, 1).unwrap_err().error_type(),
            "bad_data"
        );
        assert!(qe.range("m", 0, 1_000_000_000, 1).is_err());
        let e = qe.instant("m + on() m", 40_000).unwrap_err();
        assert_eq!(e.error_type(), "execution");
        let e = qe
            .instant("label_replace(m, \"1x\", \"\", \"host\", \".*\")", 1)
            .unwrap_err();
        assert!(matches!(e, QueryError::Execution(_)));
    }

    #[test]
    fn limits_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let small = QueryLimits {
            max_samples: 5,
            ..QueryLimits::default()
        };
        let qe = QueryEngine::new(e.clone(), small);
        assert!(matches!(
            qe.instant("m", 90_000),
            Err(QueryError::TooManySamples)
        ));
        let instant = QueryLimits {
            timeout: Duration::ZERO,
            ..QueryLimits::default()
        };
        let qe = QueryEngine::new(e, instant);
        assert!(matches!(
            qe.range("m", 0, 90_000, 1_000),
            Err(QueryError::Timeout)
        ));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::storage::EngineOptions;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        /// Any query text gives a result or an error, never a panic.
        #[test]
        fn arbitrary_queries_never_panic(q in "[a-z_(){}\\[\\]=~!\"0-9,.:@+*/%^ -]{0,40}|.{0,40}") {
            let dir = tempfile::tempdir().unwrap();
            let mut opts = EngineOptions::new(dir.path());
            opts.wal_sync = false;
            let qe = QueryEngine::new(Arc::new(Engine::open(opts).unwrap()), QueryLimits::default());
            let _ = qe.instant(&q, 1_000_000);
            let _ = qe.range(&q, 0, 600_000, 60_000);
        }
    }
}
