//! The client Service `<name>`: queries, writes and ingest reach any ready node.

use k8s_openapi::api::core::v1::{Service, ServiceSpec};

use super::peers_service::service_port;
use super::{owned_meta, selector_labels, Component, Names};
use crate::crd::TimeSeriesCluster;

/// The client Service on the HTTP (8181), TCP JSON (5433) and binary (9876) ports.
pub fn client_service(tsc: &TimeSeriesCluster) -> Service {
    let names = Names::of(tsc);
    let p = &tsc.spec.ports;
    let mut metadata = owned_meta(tsc, &names, names.cluster.clone(), Component::Node);
    if !tsc.spec.service.annotations.is_empty() {
        metadata.annotations = Some(tsc.spec.service.annotations.clone());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(
                tsc.spec
                    .service
                    .type_
                    .map(|t| t.as_str())
                    .unwrap_or("ClusterIP")
                    .into(),
            ),
            selector: Some(selector_labels(&names, Component::Node)),
            ports: Some(vec![
                service_port("http", p.http, "TCP"),
                service_port("tcp-json", p.tcp, "TCP"),
                service_port("binary", p.binary, "TCP"),
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
    fn default_ports_and_type() {
        let svc = client_service(&cluster("tsc", "{}"));
        assert_eq!(svc.metadata.name.as_deref(), Some("tsc"));
        assert!(svc.metadata.annotations.is_none());
        let s = svc.spec.unwrap();
        assert_eq!(s.type_.as_deref(), Some("ClusterIP"));
        let ports: Vec<_> = s.ports.unwrap().into_iter().map(|p| p.port).collect();
        assert_eq!(ports, [8181, 5433, 9876]);
    }

    #[test]
    fn load_balancer_with_annotations() {
        let svc = client_service(&cluster(
            "tsc",
            "service: {type: LoadBalancer, annotations: {lb.example/internal: 'true'}}",
        ));
        assert_eq!(
            svc.metadata.annotations.unwrap()["lb.example/internal"],
            "true"
        );
        assert_eq!(svc.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));
    }
}
