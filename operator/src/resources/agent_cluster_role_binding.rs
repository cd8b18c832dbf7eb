//! Binds the agent's ClusterRole to its ServiceAccount.

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{labels, Component, Names};
use crate::crd::TimeSeriesCluster;

/// The ClusterRoleBinding, named like the role; removed by the finalizer like the role.
pub fn agent_cluster_role_binding(tsc: &TimeSeriesCluster) -> Option<ClusterRoleBinding> {
    if !tsc.spec.node_agent.enabled {
        return None;
    }
    let names = Names::of(tsc);
    Some(ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(names.agent_cluster_role()),
            labels: Some(labels(&names, Component::Agent)),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: names.agent_cluster_role(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names.agent(),
            namespace: Some(names.namespace.clone()),
            api_group: None,
        }]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::cluster;

    #[test]
    fn binds_the_agent_account() {
        let b = agent_cluster_role_binding(&cluster("tsc", "nodeAgent: {enabled: true}")).unwrap();
        assert_eq!(b.role_ref.name, "strata-agent-metrics-tsc");
        let s = &b.subjects.unwrap()[0];
        assert_eq!(
            (s.name.as_str(), s.namespace.as_deref()),
            ("tsc-agent", Some("metrics"))
        );
    }
}
