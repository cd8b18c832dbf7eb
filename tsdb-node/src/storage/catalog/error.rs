//! Errors of [`Catalog::insert`](super::Catalog::insert), the recovery path.
//!
//! A conflict means the persisted state (WAL, segments) disagrees with itself, so the
//! messages carry both sides to make the corruption diagnosable.

use crate::storage::model::SeriesId;

/// Why a recovered series could not be added to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The id is already assigned to a different label set.
    #[error("series id {id} is already assigned to {existing}, cannot assign it to {new}")]
    IdConflict {
        /// The conflicting id.
        id: SeriesId,
        /// The label set that already owns the id, rendered and truncated.
        existing: String,
        /// The label set that was being inserted, rendered and truncated.
        new: String,
    },
    /// The label set already exists under a different id.
    #[error("series {labels} already has id {existing_id}, cannot give it id {new_id}")]
    LabelsConflict {
        /// The label set, rendered and truncated.
        labels: String,
        /// The id the label set already has.
        existing_id: SeriesId,
        /// The id that was being inserted.
        new_id: SeriesId,
    },
    /// The id is outside the range the catalog can assign (0 and `u64::MAX` are reserved).
    #[error("series id {id} is out of range: valid ids are 1..{max}", max = u64::MAX)]
    InvalidId {
        /// The rejected id.
        id: SeriesId,
    },
    /// More distinct label strings than the catalog can address (2^32).
    #[error("too many distinct label names and values in the catalog")]
    SymbolSpaceExhausted,
}
