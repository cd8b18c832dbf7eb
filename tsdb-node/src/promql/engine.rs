//! Entry point: parsing, the data-loading plan, limits, and the step loop of range queries.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::{AtModifier, Expr, MatrixSelector, VectorSelector};
use regex::Regex;

use crate::storage::{Engine, Labels};

use super::error::QueryError;
use super::eval::{duration_ms, offset_ms, Evaluator};
use super::functions::check_unique;
use super::inline;
use super::instant_stream;
use super::pushdown::{self, PushdownQuery};
use super::rollup::{self, Grid, RollupRead, WindowFold};
use super::rollup_edges;
use super::selector::{node_key, Store};
use super::series_eval;
use super::source::SeriesSource;
use super::streaming::{self, Streaming};
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

/// Per-query choices a caller may make.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// Whether an aggregation may be evaluated where the data lives (a cluster's members),
    /// when the source can do so exactly; off, raw series are read and aggregated here.
    pub pushdown: bool,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions { pushdown: true }
    }
}

/// Evaluates PromQL over a series source (the local engine, or the cluster).
pub struct QueryEngine {
    source: Arc<dyn SeriesSource>,
    limits: QueryLimits,
    /// Whether `*_over_time` windows that line up with rollup buckets read rollups.
    use_rollups: bool,
    /// Selectors answered from rollups since start, for `/metrics` and tests.
    rollup_selectors: AtomicU64,
    /// Whether range queries of the common shapes are evaluated series by series.
    series_eval: bool,
    /// Whether those shapes stream series from a local engine instead of loading them first.
    streaming: bool,
    /// Threads a streamed query spreads its series over.
    threads: usize,
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

/// Teaches the parser the Prometheus 2.42 functions it no longer knows: `holt_winters`, which
/// Prometheus 3 renamed `double_exponential_smoothing`.
pub(crate) fn register_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::function::{register_extra_functions, Function};
        use promql_parser::parser::value::ValueType;
        let holt_winters = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        if let Err(e) = register_extra_functions(vec![holt_winters]) {
            tracing::error!(error = %e, "could not register holt_winters with the PromQL parser");
        }
    });
}

fn parse(query: &str) -> Result<Plan, QueryError> {
    register_functions();
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
        QueryEngine {
            source,
            limits,
            use_rollups: true,
            rollup_selectors: AtomicU64::new(0),
            series_eval: true,
            streaming: true,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4),
        }
    }

    /// Where this engine reads series (also used by the metadata endpoints).
    pub fn source(&self) -> &Arc<dyn SeriesSource> {
        &self.source
    }

    /// Turns the series-by-series evaluation of common range-query shapes on (the default) or
    /// off; off, every range query runs the step loop. Answers are identical either way (see
    /// [`super::series_eval`]).
    pub fn with_series_eval(mut self, on: bool) -> Self {
        self.series_eval = on;
        self
    }

    /// Turns streaming on (the default) or off: with it, the shapes evaluated series by series
    /// read their series one at a time from a local engine, on several threads (see
    /// [`super::streaming`]); without it, they are loaded first. Answers are the same up to
    /// the rounding of sums.
    pub fn with_streaming(mut self, on: bool) -> Self {
        self.streaming = on;
        self
    }

    /// How many threads one streamed query may use (at least one; by default the machine's
    /// parallelism, at most four).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Turns reading rollups for aligned `*_over_time` windows on (the default) or off; off,
    /// every selector reads raw samples. Answers are the same either way (see
    /// [`super::rollup`]); only the cost differs.
    pub fn with_rollups(mut self, on: bool) -> Self {
        self.use_rollups = on;
        self
    }

    /// How many selectors have been answered from downsampled rollups so far.
    pub fn rollup_selectors_total(&self) -> u64 {
        self.rollup_selectors.load(Ordering::Relaxed)
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Evaluates `query` at `time_ms`.
    pub fn instant(&self, query: &str, time_ms: i64) -> Result<QueryResult, QueryError> {
        self.instant_with(query, time_ms, &QueryOptions::default())
    }

    /// [`QueryEngine::instant`] with per-query options.
    pub fn instant_with(
        &self,
        query: &str,
        time_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        let plan = parse(query)?;
        self.instant_plan(&plan, query, time_ms, opts)
    }

    /// [`QueryEngine::instant_with`] on the calling thread, when the query is known to be cheap
    /// (see [`super::inline`]): a local engine, no subquery, few series and samples by the
    /// index. `None` when it is not, before anything is read: the caller then evaluates it
    /// where blocking is allowed. A query that does not parse is answered here too.
    pub fn instant_inline(
        &self,
        query: &str,
        time_ms: i64,
        opts: &QueryOptions,
    ) -> Option<Result<QueryResult, QueryError>> {
        let engine = self.source.local_engine()?;
        let plan = match parse(query) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        if inline::has_subquery(plan.expr()) {
            return None;
        }
        let grid = Grid {
            start: time_ms,
            end: time_ms,
            step: 0,
        };
        let mut planner = self.planner(grid, &[]);
        planner.walk(plan.expr(), time_ms, time_ms, true);
        let reads = planner.ranges.values().map(|&(vs, a, b)| (vs, a, b));
        match inline::small_enough(engine, reads) {
            Ok(true) => Some(self.instant_plan(&plan, query, time_ms, opts)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn instant_plan(
        &self,
        plan: &Plan,
        query: &str,
        time_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        let deadline = Instant::now() + self.limits.timeout;
        let grid = Grid {
            start: time_ms,
            end: time_ms,
            step: 0,
        };
        if let Some(r) = self.try_pushdown(plan, query, grid, deadline, opts)? {
            return Ok(r);
        }
        if let (true, true, Plan::Expr(e), Some(engine)) = (
            self.series_eval,
            self.streaming,
            plan,
            self.source.local_engine(),
        ) {
            let resolutions: &[i64] = if self.use_rollups {
                &engine.options().downsample_resolutions_ms
            } else {
                &[]
            };
            let max = self.limits.max_samples;
            if let Some(value) = rollup_edges::try_instant(engine, e, time_ms, resolutions, max) {
                self.rollup_selectors.fetch_add(1, Ordering::Relaxed);
                return Ok(QueryResult {
                    value: value?,
                    warnings: Vec::new(),
                });
            }
            if let Some(value) = instant_stream::try_instant(engine, e, time_ms, resolutions, max) {
                return Ok(QueryResult {
                    value: value?,
                    warnings: Vec::new(),
                });
            }
        }
        let store = self.load(plan, grid)?;
        let ev = self.evaluator(&store, time_ms, time_ms, deadline);
        let value = match eval_plan(&ev, plan, time_ms)? {
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
        self.range_with(query, start_ms, end_ms, step_ms, &QueryOptions::default())
    }

    /// [`QueryEngine::range`] with per-query options.
    pub fn range_with(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
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
        let grid = Grid {
            start: start_ms,
            end: end_ms,
            step: step_ms,
        };
        if let Some(r) = self.try_pushdown(&plan, query, grid, deadline, opts)? {
            return Ok(r);
        }
        if let (true, true, Plan::Expr(e), Some(engine)) = (
            self.series_eval,
            self.streaming,
            &plan,
            self.source.local_engine(),
        ) {
            let empty = Store::default();
            let ev = self.evaluator(&empty, start_ms, end_ms, deadline);
            let how = Streaming {
                threads: self.threads,
                resolutions: if self.use_rollups {
                    &engine.options().downsample_resolutions_ms
                } else {
                    &[]
                },
                max_samples: self.limits.max_samples,
            };
            if let Some(r) = streaming::try_range(engine, &ev, e, grid, &how) {
                let (series, cost) = r?;
                self.check_samples(cost)?;
                return Ok(QueryResult {
                    value: Value::Matrix(series.into_iter().collect()),
                    warnings: Vec::new(),
                });
            }
        }
        let store = self.load(&plan, grid)?;
        let ev = self.evaluator(&store, start_ms, end_ms, deadline);
        if let (true, Plan::Expr(e)) = (self.series_eval, &plan) {
            if let Some(r) = series_eval::try_range(&ev, e, grid) {
                let (series, points) = r?;
                self.check_samples(store.samples.saturating_add(points))?;
                return Ok(QueryResult {
                    value: Value::Matrix(series.into_iter().collect()),
                    warnings: store.warnings.clone(),
                });
            }
        }
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

    /// Answers an aggregation from partial aggregates computed where the data lives, when
    /// the source can do that exactly (a cluster; see [`super::pushdown`]). `None`: evaluate
    /// here as usual.
    fn try_pushdown(
        &self,
        plan: &Plan,
        query: &str,
        grid: Grid,
        deadline: Instant,
        opts: &QueryOptions,
    ) -> Result<Option<QueryResult>, QueryError> {
        let Plan::Expr(expr) = plan else {
            return Ok(None);
        };
        if !opts.pushdown || self.source.local_engine().is_some() {
            return Ok(None);
        }
        let Some(shape) = pushdown::shape(expr) else {
            return Ok(None);
        };
        let q = PushdownQuery {
            query: query.to_string(),
            start: grid.start,
            end: grid.end,
            step: grid.step,
            lookback_ms: self.limits.lookback_delta_ms,
            max_samples: self.limits.max_samples,
            deadline,
        };
        let Some(parts) = self.source.aggregate(&q)? else {
            return Ok(None);
        };
        Ok(Some(QueryResult {
            value: pushdown::finish(&shape, &q, parts)?,
            warnings: Vec::new(),
        }))
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

    fn planner<'e, 'r>(&self, grid: Grid, resolutions: &'r [i64]) -> Planner<'e, 'r> {
        Planner {
            start: grid.start,
            end: grid.end,
            lookback: self.limits.lookback_delta_ms,
            grid,
            resolutions,
            ranges: HashMap::new(),
            rollups: HashMap::new(),
        }
    }

    /// Reads every selector's data for the whole query in one storage call per selector (two
    /// for a selector answered from rollups: buckets and window edges).
    fn load(&self, plan: &Plan, grid: Grid) -> Result<Store, QueryError> {
        // Rollups only from a local engine: see `SeriesSource::local_engine`.
        let local = self.source.local_engine().filter(|_| self.use_rollups);
        let resolutions: &[i64] = match local {
            Some(engine) => &engine.options().downsample_resolutions_ms,
            None => &[],
        };
        let mut planner = self.planner(grid, resolutions);
        if let Plan::Window(_, Expr::MatrixSelector(ms)) = plan {
            planner.consider_rollup(ms);
        }
        planner.walk(plan.expr(), grid.start, grid.end, true);
        let mut store = Store::default();
        for (key, (vs, mint, maxt)) in planner.ranges {
            match (planner.rollups.get(&key), local) {
                (Some(read), Some(engine)) => {
                    store.load_rollup(engine, vs, *read, (mint, maxt), self.limits.max_samples)?
                }
                _ => store.load(&*self.source, vs, mint, maxt, self.limits.max_samples)?,
            }
        }
        self.rollup_selectors
            .fetch_add(store.rollup_selectors as u64, Ordering::Relaxed);
        Ok(store)
    }
}

fn eval_plan(ev: &Evaluator, plan: &Plan, ts: i64) -> Result<StepValue, QueryError> {
    match plan {
        Plan::Expr(e) => ev.eval(e, ts),
        Plan::Window(op, e) => {
            let Expr::MatrixSelector(ms) = e else {
                return Err(QueryError::exec("expected a range selector"));
            };
            // Series answered from rollups first, then those read raw; the fold's min/max
            // rule makes the order irrelevant for them, and sums differ only in rounding.
            let mut all = ev.bucketed_folds(ms, ts).into_iter().fold(
                WindowFold::default(),
                |mut acc, (_, f)| {
                    acc.merge(&f);
                    acc
                },
            );
            for s in ev.eval_range_arg(e, ts)?.0 {
                for p in s.points {
                    all.add_sample(p.1);
                }
            }
            if all.count == 0 {
                return Ok(StepValue::Vector(Vec::new()));
            }
            let v = match op {
                WindowOp::Sum => all.sum(),
                WindowOp::Avg => all.avg(),
                WindowOp::Min => all.min(),
                WindowOp::Max => all.max(),
                WindowOp::Count => all.count as f64,
            };
            Ok(StepValue::Vector(vec![Elem {
                labels: Labels::default(),
                t: ts,
                v,
            }]))
        }
    }
}

/// Works out which time range each selector needs over the whole query, and which range
/// selectors rollups can answer.
struct Planner<'e, 'r> {
    start: i64,
    end: i64,
    lookback: i64,
    /// The query's evaluation times; nodes outside subqueries are evaluated exactly there.
    grid: Grid,
    /// Rollup resolutions to consider (none when rollups are off).
    resolutions: &'r [i64],
    ranges: HashMap<usize, (&'e VectorSelector, i64, i64)>,
    rollups: HashMap<usize, RollupRead>,
}

impl<'e> Planner<'e, '_> {
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

    fn add(&mut self, vs: &'e VectorSelector, mint: i64, maxt: i64) {
        let e = self.ranges.entry(node_key(vs)).or_insert((vs, mint, maxt));
        e.1 = e.1.min(mint);
        e.2 = e.2.max(maxt);
    }

    /// Marks `ms` to be read from rollups if its windows line up with bucket edges at every
    /// evaluation time of the query.
    fn consider_rollup(&mut self, ms: &MatrixSelector) {
        if let Some(read) = rollup::plan(ms, self.grid, self.resolutions) {
            self.rollups.insert(node_key(&ms.vs), read);
        }
    }

    /// Visits `e`, evaluated at times in `[lo, hi]`; `on_grid` says those times are exactly
    /// the query's grid (false inside subqueries, which have their own steps).
    fn walk(&mut self, e: &'e Expr, lo: i64, hi: i64, on_grid: bool) {
        match e {
            Expr::VectorSelector(vs) => {
                let (a, b) = self.times(&vs.at, lo, hi);
                let off = offset_ms(&vs.offset);
                self.add(
                    vs,
                    a.saturating_sub(off).saturating_sub(self.lookback),
                    b.saturating_sub(off),
                );
            }
            Expr::MatrixSelector(ms) => {
                let (a, b) = self.times(&ms.vs.at, lo, hi);
                let off = offset_ms(&ms.vs.offset);
                self.add(
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
                    false,
                );
            }
            Expr::Paren(p) => self.walk(&p.expr, lo, hi, on_grid),
            Expr::Unary(u) => self.walk(&u.expr, lo, hi, on_grid),
            Expr::Binary(b) => {
                self.walk(&b.lhs, lo, hi, on_grid);
                self.walk(&b.rhs, lo, hi, on_grid);
            }
            Expr::Aggregate(a) => {
                self.walk(&a.expr, lo, hi, on_grid);
                if let Some(p) = &a.param {
                    self.walk(p, lo, hi, on_grid);
                }
            }
            Expr::Call(c) => {
                if on_grid {
                    if let Some(ms) = rollup::candidate(c.func.name, &c.args.args) {
                        self.consider_rollup(ms);
                    }
                }
                for a in &c.args.args {
                    self.walk(a, lo, hi, on_grid);
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
