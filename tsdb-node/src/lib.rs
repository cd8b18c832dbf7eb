//! Strata's storage node. The storage engine lives in [`storage`]; the `strata-node` and
//! `stratactl` binaries are built on it.

pub mod auth;
pub mod dataset;
pub mod ingest;
pub mod storage;
