//! The messages of Prometheus remote write 1.0. They live in the shared `strata-proto` crate
//! because the node agent sends what the node receives.

pub use strata_proto::remote_write::*;
