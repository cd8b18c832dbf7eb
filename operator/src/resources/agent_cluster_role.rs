//! The node agent's ClusterRole: read pods, nothing else. Pods of every namespace run on a
//! node, so the role is cluster-wide; the agent narrows its watch to `spec.nodeName`.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{labels, Component, Names};
use crate::crd::TimeSeriesCluster;

/// The ClusterRole `strata-agent-<namespace>-<name>`. Cluster-scoped objects cannot be owned
/// by a namespaced resource, so it carries labels only and the finalizer deletes it.
pub fn agent_cluster_role(tsc: &TimeSeriesCluster) -> Option<ClusterRole> {
    if !tsc.spec.node_agent.enabled {
        return None;
    }
    let names = Names::of(tsc);
    Some(ClusterRole {
        metadata: ObjectMeta {
            name: Some(names.agent_cluster_role()),
            labels: Some(labels(&names, Component::Agent)),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
        aggregation_rule: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::cluster;

    #[test]
    fn read_only_pods() {
        let role = agent_cluster_role(&cluster("tsc", "nodeAgent: {enabled: true}")).unwrap();
        assert_eq!(
            role.metadata.name.as_deref(),
            Some("strata-agent-metrics-tsc")
        );
        assert!(role.metadata.owner_references.is_none());
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["pods".to_string()][..])
        );
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
    }
}
