//! The PodDisruptionBudget of the storage nodes.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{owned_meta, selector_labels, Component, Names};
use crate::crd::TimeSeriesCluster;

/// The budget, or `None` when the spec disables it (the controller then deletes it).
pub fn pdb(tsc: &TimeSeriesCluster) -> Option<PodDisruptionBudget> {
    if !tsc.spec.pod_disruption_budget.enabled {
        return None;
    }
    let names = Names::of(tsc);
    Some(PodDisruptionBudget {
        metadata: owned_meta(tsc, &names, names.pdb(), Component::Node),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(
                tsc.spec.pod_disruption_budget.max_unavailable,
            )),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&names, Component::Node)),
                match_expressions: None,
            }),
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::cluster;

    #[test]
    fn one_unavailable_by_default_and_optional() {
        let p = pdb(&cluster("tsc", "{}")).unwrap();
        let s = p.spec.unwrap();
        assert_eq!(s.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            s.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
            "tsc"
        );
        assert!(pdb(&cluster("tsc", "podDisruptionBudget: {enabled: false}")).is_none());
    }
}
