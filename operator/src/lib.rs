//! The Strata Kubernetes operator: the `TimeSeriesCluster` custom resource, builders for the
//! objects it owns, and the controller that reconciles clusters (see ARCHITECTURE.md).

pub mod controller;
pub mod crd;
pub mod resources;
