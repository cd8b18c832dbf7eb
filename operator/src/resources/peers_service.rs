//! The headless Service `<name>-peers`: a stable DNS name per pod for gossip seeds and
//! node-to-node RPC.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{owned_meta, selector_labels, Component, Names};
use crate::crd::TimeSeriesCluster;

/// Label telling the peers Service apart from the client Service (same selector labels).
pub const PEERS_LABEL: (&str, &str) = ("strata.dev/service", "peers");

pub(super) fn service_port(name: &str, port: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

/// The headless Service. It publishes pods before they are ready: a node joins the ring
/// through gossip before its readiness probe (ring membership) can pass.
pub fn peers_service(tsc: &TimeSeriesCluster) -> Service {
    let names = Names::of(tsc);
    let p = &tsc.spec.ports;
    let mut metadata = owned_meta(tsc, &names, names.peers_service(), Component::Node);
    // Lets a ServiceMonitor pick the Service that lists every pod, not the client one.
    if let Some(l) = metadata.labels.as_mut() {
        l.insert(PEERS_LABEL.0.into(), PEERS_LABEL.1.into());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&names, Component::Node)),
            ports: Some(vec![
                service_port("gossip", p.gossip, "TCP"),
                service_port("gossip-udp", p.gossip, "UDP"),
                service_port("grpc", p.grpc, "TCP"),
                service_port("http", p.http, "TCP"),
            ]),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::cluster;

    #[test]
    fn headless_and_publishes_not_ready_pods() {
        let svc = peers_service(&cluster("tsc", "{}"));
        assert_eq!(svc.metadata.name.as_deref(), Some("tsc-peers"));
        assert_eq!(
            svc.metadata.labels.as_ref().unwrap()["strata.dev/service"],
            "peers"
        );
        let s = svc.spec.unwrap();
        assert_eq!(s.cluster_ip.as_deref(), Some("None"));
        assert_eq!(s.publish_not_ready_addresses, Some(true));
        let ports: Vec<_> = s
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.port, p.protocol.unwrap()))
            .collect();
        assert!(ports.contains(&(7946, "UDP".into())));
        assert!(ports.contains(&(7946, "TCP".into())));
        assert!(ports.contains(&(7070, "TCP".into())));
        assert_eq!(s.selector.unwrap()["app.kubernetes.io/component"], "node");
    }
}
