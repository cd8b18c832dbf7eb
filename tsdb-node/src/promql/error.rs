//! Query errors, each mapped to the Prometheus HTTP API's `errorType`.

use crate::storage::StorageError;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query text is not valid PromQL (HTTP 400, `bad_data`).
    #[error("parse error: {0}")]
    Parse(String),
    /// A request argument is out of range, e.g. a range query with too many steps (HTTP 400,
    /// `bad_data`).
    #[error("{0}")]
    InvalidArgument(String),
    /// The query is valid but cannot be evaluated on this data (HTTP 422, `execution`).
    #[error("{0}")]
    Execution(String),
    /// The query ran longer than the configured timeout (HTTP 503, `timeout`).
    #[error("query timed out")]
    Timeout,
    /// The query would load more samples than the configured limit (HTTP 422, `execution`).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// Storage failed to read (HTTP 500, `internal`).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QueryError {
    /// The Prometheus API `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::Parse(_) | QueryError::InvalidArgument(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples => "execution",
            QueryError::Timeout => "timeout",
            QueryError::Storage(_) => "internal",
        }
    }

    /// The HTTP status Prometheus answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            QueryError::Parse(_) | QueryError::InvalidArgument(_) => 400,
            QueryError::Execution(_) | QueryError::TooManySamples => 422,
            QueryError::Timeout => 503,
            QueryError::Storage(_) => 500,
        }
    }

    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        QueryError::Execution(msg.into())
    }
}
