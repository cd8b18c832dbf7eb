//! Strata's storage node. The storage engine lives in [`storage`]; the `strata-node` and
//! `stratactl` binaries are built on it.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod dataset;
pub mod http;
pub mod ingest;
pub mod metadata;
pub mod node;
pub mod promql;
pub mod storage;
