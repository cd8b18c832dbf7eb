//! Volume expansion. Claim templates are immutable, so a larger size is applied in two moves:
//! patch every existing claim (the StorageClass must allow expansion), then delete the
//! StatefulSet with `propagationPolicy: Orphan` so the next apply re-creates it with the new
//! templates and adopts the running pods — `kubectl delete --cascade=orphan` semantics.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use super::quantity;
use crate::crd::TimeSeriesCluster;

/// A claim template whose size the spec changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resize {
    /// `wal` or `data`.
    pub template: String,
    /// The new requested size.
    pub size: String,
}

fn requested(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.as_str())
}

/// Templates of the existing StatefulSet whose size differs in value from the spec (the API
/// server stores `10240Mi` as `10Gi`: the text alone would re-create the StatefulSet on
/// every reconcile). The CRD's transition rule guarantees the spec only grows.
pub fn resizes(tsc: &TimeSeriesCluster, sts: &StatefulSet) -> Vec<Resize> {
    let templates = sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref());
    let mut out = Vec::new();
    for (name, want) in [
        ("wal", &tsc.spec.storage.wal.size),
        ("data", &tsc.spec.storage.data.size),
    ] {
        let have = templates
            .into_iter()
            .flatten()
            .find(|t| t.metadata.name.as_deref() == Some(name))
            .and_then(requested);
        if have.is_some_and(|h| !quantity::same_size(h, want)) {
            out.push(Resize {
                template: name.into(),
                size: want.clone(),
            });
        }
    }
    out
}

/// Existing claims of `template` that still request less than `size` (by value; a claim
/// already larger is left alone, since claims cannot shrink).
pub fn claims_to_expand<'a>(
    pvcs: &'a [PersistentVolumeClaim],
    template: &str,
    cluster: &str,
    size: &str,
) -> Vec<&'a PersistentVolumeClaim> {
    let prefix = format!("{template}-{cluster}-");
    pvcs.iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|ord| !ord.is_empty() && ord.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|p| requested(p).is_none_or(|r| quantity::smaller(r, size)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::cluster;
    use crate::resources::{statefulset, ReplicaPlan};
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, VolumeResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pvc(name: &str, size: &str) -> PersistentVolumeClaim {
        let mut p = PersistentVolumeClaim::default();
        p.metadata.name = Some(name.into());
        p.spec = Some(PersistentVolumeClaimSpec {
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                limits: None,
            }),
            ..Default::default()
        });
        p
    }

    #[test]
    fn detects_grown_templates_and_their_claims() {
        let plan = ReplicaPlan {
            replicas: 2,
            config_hash: String::new(),
        };
        let old = statefulset(&cluster("tsc", "{}"), &plan);
        assert!(resizes(&cluster("tsc", "{}"), &old).is_empty());
        let grown = cluster("tsc", "storage: {data: {size: 50Gi}}");
        assert_eq!(
            resizes(&grown, &old),
            vec![Resize {
                template: "data".into(),
                size: "50Gi".into()
            }]
        );
        let pvcs = [
            pvc("data-tsc-0", "50Gi"),
            pvc("data-tsc-1", "10Gi"),
            pvc("wal-tsc-1", "2Gi"),
            pvc("data-tsc-x-0", "10Gi"),
        ];
        let todo: Vec<_> = claims_to_expand(&pvcs, "data", "tsc", "50Gi")
            .into_iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(todo, ["data-tsc-1"]);
    }

    #[test]
    fn sizes_are_compared_by_value_not_text() {
        let plan = ReplicaPlan {
            replicas: 2,
            config_hash: String::new(),
        };
        // The StatefulSet as stored: the API server wrote the quantities canonically.
        let stored = statefulset(
            &cluster("tsc", "storage: {wal: {size: 2Gi}, data: {size: 10Gi}}"),
            &plan,
        );
        let same = cluster(
            "tsc",
            "storage: {wal: {size: 2048Mi}, data: {size: 10240Mi}}",
        );
        assert!(resizes(&same, &stored).is_empty());
        let pvcs = [
            pvc("data-tsc-0", "10Gi"),
            pvc("data-tsc-1", "10737418240"),
            pvc("data-tsc-2", "20Gi"),
            pvc("data-tsc-3", "9Gi"),
        ];
        let todo: Vec<_> = claims_to_expand(&pvcs, "data", "tsc", "10240Mi")
            .into_iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(todo, ["data-tsc-3"]);
    }
}
