//! Where queries read series from: the local engine, or in a cluster the fan-out over the
//! replicas (`cluster::ClusterSource`). The PromQL engine and the metadata endpoints see
//! only this trait, so both sources are interchangeable.

use super::pushdown::{Partials, PushdownQuery};
use super::QueryError;
use crate::storage::{Engine, Labels, Matcher, Sample, StorageError};

/// Series with their samples in time order, one entry per label set.
pub type SelectedSeries = Vec<(Labels, Vec<Sample>)>;

/// Data plus the warnings gathered while reading it (e.g. a replica set was unreachable, so
/// the answer may be incomplete).
#[derive(Debug, Default)]
pub struct Sourced<T> {
    pub data: T,
    pub warnings: Vec<String>,
}

impl<T> Sourced<T> {
    pub fn complete(data: T) -> Self {
        Sourced {
            data,
            warnings: Vec::new(),
        }
    }
}

/// Reads of series data. Implementations block; callers run them on the blocking pool.
pub trait SeriesSource: Send + Sync {
    /// Every selected series' samples in `[mint, maxt]` (inclusive), in time order, one
    /// entry per label set.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<SelectedSeries>, StorageError>;

    /// Label sets of the selected series with data in the range (every series when
    /// `matchers` is empty).
    fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<Vec<Labels>>, StorageError>;

    /// Sorted label names of the selected series with data in the range.
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<Vec<String>>, StorageError>;

    /// Sorted values of label `name` over the selected series with data in the range.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<Vec<String>>, StorageError>;

    /// The local engine when this source is exactly one node's storage. Downsampled rollups
    /// are read only then: replicas downsample on their own schedules, so a fan-out cannot
    /// combine their buckets exactly.
    fn local_engine(&self) -> Option<&Engine> {
        None
    }

    /// Partial aggregates of a query [`super::pushdown`] accepts, evaluated where the data
    /// lives, one entry per answering node in a fixed order. `Ok(None)` when this source
    /// cannot answer it exactly that way; the caller then reads raw series.
    fn aggregate(&self, _q: &PushdownQuery) -> Result<Option<Vec<Partials>>, QueryError> {
        Ok(None)
    }
}

impl SeriesSource for Engine {
    fn local_engine(&self) -> Option<&Engine> {
        Some(self)
    }

    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<SelectedSeries>, StorageError> {
        Ok(Sourced::complete(
            Engine::select(self, matchers, mint, maxt)?
                .into_iter()
                .map(|s| (s.labels, s.samples))
                .collect(),
        ))
    }

    fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<Vec<Labels>>, StorageError> {
        Ok(Sourced::complete(Engine::series(
            self, matchers, mint, maxt,
        )?))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<Vec<String>>, StorageError> {
        Ok(Sourced::complete(Engine::label_names(
            self, matchers, mint, maxt,
        )?))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<Vec<String>>, StorageError> {
        Ok(Sourced::complete(Engine::label_values(
            self, name, matchers, mint, maxt,
        )?))
    }
}
