//! The node agent's ServiceAccount.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::{owned_meta, Component, Names};
use crate::crd::TimeSeriesCluster;

/// The ServiceAccount `<name>-agent`, or `None` when the agent is disabled.
pub fn agent_service_account(tsc: &TimeSeriesCluster) -> Option<ServiceAccount> {
    if !tsc.spec.node_agent.enabled {
        return None;
    }
    let names = Names::of(tsc);
    Some(ServiceAccount {
        metadata: owned_meta(tsc, &names, names.agent(), Component::Agent),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::cluster;

    #[test]
    fn only_when_enabled() {
        assert!(agent_service_account(&cluster("tsc", "{}")).is_none());
        let sa = agent_service_account(&cluster("tsc", "nodeAgent: {enabled: true}")).unwrap();
        assert_eq!(sa.metadata.name.as_deref(), Some("tsc-agent"));
        assert_eq!(sa.metadata.namespace.as_deref(), Some("metrics"));
    }
}
