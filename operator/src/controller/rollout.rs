//! Rollouts under the StatefulSet's `OnDelete` strategy: the controller deletes one outdated
//! pod at a time, highest ordinal first, and only while every pod is ready and the ring is
//! healthy, so at most one replica of any series is ever down for an upgrade.

use kube::ResourceExt;

use super::observed::{is_ready, ordinal, Observed};
use crate::resources::Names;

/// Label the StatefulSet controller puts on each pod with its template revision.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// What to do about pods running an old template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutStep {
    /// Every pod runs the current template.
    UpToDate,
    /// Delete this pod; the StatefulSet re-creates it from the new template.
    Replace { pod: String },
    /// Outdated pods remain, but it is not safe to replace one now.
    Wait {
        reason: &'static str,
        outdated: usize,
    },
}

/// Decides the next rollout step. `replicas` is what the StatefulSet runs now.
pub fn plan(names: &Names, observed: &Observed, replicas: i32) -> RolloutStep {
    let Some(revision) = observed.update_revision() else {
        return RolloutStep::UpToDate;
    };
    let mut outdated: Vec<(i32, String)> = observed
        .pods
        .iter()
        .filter(|p| p.labels().get(REVISION_LABEL).map(String::as_str) != Some(revision))
        .filter_map(|p| {
            let name = p.name_any();
            ordinal(names, "", &name).map(|o| (o, name))
        })
        .filter(|(o, _)| *o < replicas)
        .collect();
    if outdated.is_empty() {
        return RolloutStep::UpToDate;
    }
    let count = outdated.len();
    let wait = |reason| RolloutStep::Wait {
        reason,
        outdated: count,
    };
    if observed
        .pods
        .iter()
        .any(|p| p.metadata.deletion_timestamp.is_some())
    {
        return wait("PodTerminating");
    }
    let ready = observed.pods.iter().filter(|p| is_ready(p)).count() as i32;
    if ready < replicas {
        return wait("PodsNotReady");
    }
    if let Some(members) = &observed.members {
        if !members
            .iter()
            .filter(|m| !m.has_left())
            .all(|m| m.is_healthy())
        {
            return wait("RingUnhealthy");
        }
    }
    outdated.sort();
    match outdated.pop() {
        Some((_, pod)) => RolloutStep::Replace { pod },
        None => RolloutStep::UpToDate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::node_api::Member;
    use crate::controller::test_support::{ready_pod, sts};

    fn names() -> Names {
        Names {
            cluster: "tsc".into(),
            namespace: "metrics".into(),
        }
    }

    fn observed(revisions: &[&str]) -> Observed {
        Observed {
            statefulset: Some(sts(revisions.len() as i32, "new")),
            pods: revisions
                .iter()
                .enumerate()
                .map(|(i, r)| ready_pod(&format!("tsc-{i}"), r))
                .collect(),
            pvcs: Vec::new(),
            members: None,
        }
    }

    #[test]
    fn replaces_highest_outdated_ordinal_first() {
        let o = observed(&["old", "old", "new"]);
        assert_eq!(
            plan(&names(), &o, 3),
            RolloutStep::Replace {
                pod: "tsc-1".into()
            }
        );
        assert_eq!(
            plan(&names(), &observed(&["new", "new"]), 2),
            RolloutStep::UpToDate
        );
    }

    #[test]
    fn one_at_a_time_and_only_on_a_healthy_ring() {
        let mut o = observed(&["old", "old", "new"]);
        o.pods[2].status = None;
        assert_eq!(
            plan(&names(), &o, 3),
            RolloutStep::Wait {
                reason: "PodsNotReady",
                outdated: 2
            }
        );
        let mut o = observed(&["old", "new"]);
        o.members = Some(vec![
            Member {
                id: "tsc-0".into(),
                state: "active".into(),
                pending_hints: 0,
            },
            Member {
                id: "tsc-1".into(),
                state: "active".into(),
                pending_hints: 4,
            },
        ]);
        assert_eq!(
            plan(&names(), &o, 2),
            RolloutStep::Wait {
                reason: "RingUnhealthy",
                outdated: 1
            }
        );
    }
}
