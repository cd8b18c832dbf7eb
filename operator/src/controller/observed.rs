//! What one reconcile reads from the cluster before deciding anything.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;

use super::node_api::Member;
use crate::resources::Names;

/// The cluster's state as read at the start of a reconcile.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The StatefulSet, when it exists. `reconcile` replaces the copy it read with the one its
    /// apply returned, so that planners see whether the StatefulSet controller has caught up
    /// with the template applied in the same reconcile.
    pub statefulset: Option<StatefulSet>,
    /// Pods selected by the cluster's node labels.
    pub pods: Vec<Pod>,
    /// Claims of the cluster's pods (both templates).
    pub pvcs: Vec<PersistentVolumeClaim>,
    /// The ring as a node reports it.
    pub ring: RingView,
}

/// What the nodes said about the ring. "Could not ask" and "there is no ring" are different
/// answers: the first must hold back anything that takes a node down, the second leaves the
/// decision to pod readiness.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RingView {
    /// No node could be asked (none ready) or none answered: the ring's health is unknown.
    #[default]
    Unknown,
    /// A node answered that it serves no cluster API (a single-node build): there is no ring.
    NotClustered,
    /// The members as the first node that answered reports them.
    Members(Vec<Member>),
}

impl RingView {
    /// The members, or none when there is no ring or it is unknown.
    pub fn members(&self) -> &[Member] {
        match self {
            RingView::Members(m) => m,
            RingView::Unknown | RingView::NotClustered => &[],
        }
    }
}

impl From<Option<Vec<Member>>> for RingView {
    /// A node's answer ([`super::node_api::NodeApi::members`]): `None` means it serves no
    /// cluster API.
    fn from(answer: Option<Vec<Member>>) -> RingView {
        match answer {
            Some(m) => RingView::Members(m),
            None => RingView::NotClustered,
        }
    }
}

impl Observed {
    /// Replicas the StatefulSet currently asks for.
    pub fn current_replicas(&self) -> Option<i32> {
        self.statefulset
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.replicas)
    }

    /// The revision new pods get, once the StatefulSet controller has seen the template.
    pub fn update_revision(&self) -> Option<&str> {
        self.statefulset
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.update_revision.as_deref())
    }

    /// The StatefulSet controller has seen the StatefulSet's current spec
    /// (`status.observedGeneration` ≥ `metadata.generation`), so `updateRevision` names the
    /// revision of the current template. Right after a template change the API server has
    /// bumped the generation but `updateRevision` still names the old template, and every
    /// pod would look up to date.
    pub fn statefulset_observed(&self) -> bool {
        let Some(sts) = &self.statefulset else {
            return false;
        };
        // The API server always sets a generation; a missing one (hand-built objects) counts
        // as 0, and a missing observedGeneration means the controller has seen nothing yet.
        let generation = sts.metadata.generation.unwrap_or(0);
        let seen = sts
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0);
        seen >= generation && self.update_revision().is_some()
    }

    /// Pods whose Ready condition is true.
    pub fn ready_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| is_ready(p))
    }

    /// The pod with this name.
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.name_any() == name)
    }

    /// Ring state of `id`, if the ring reports it.
    pub fn member_state(&self, id: &str) -> Option<&str> {
        self.ring
            .members()
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.state.as_str())
    }
}

/// The pod's Ready condition is true and it is not being deleted.
pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The StatefulSet ordinal of a pod or claim name (`<cluster>-<n>` or `<tmpl>-<cluster>-<n>`).
pub fn ordinal(names: &Names, prefix: &str, name: &str) -> Option<i32> {
    name.strip_prefix(prefix)?
        .strip_prefix(&names.cluster)?
        .strip_prefix('-')?
        .parse()
        .ok()
        .filter(|n: &i32| *n >= 0)
}
