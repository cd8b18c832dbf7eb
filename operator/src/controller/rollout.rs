//! Rollouts under the StatefulSet's `OnDelete` strategy: the controller deletes one outdated
//! pod at a time, highest ordinal first, and only while every pod is ready and the ring is
//! healthy, so at most one replica of any series is ever down for an upgrade.

use kube::ResourceExt;

use super::observed::{is_ready, ordinal, Observed, RingView};
use crate::resources::Names;

/// Label the StatefulSet controller puts on each pod with its template revision.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// What to do about pods running an old template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutStep {
    /// The StatefulSet controller has seen the current template and every pod runs it.
    UpToDate,
    /// Delete this pod; the StatefulSet re-creates it from the new template.
    Replace { pod: String },
    /// Outdated pods remain (or may remain), but it is not safe to replace one now.
    Wait {
        reason: &'static str,
        outdated: usize,
    },
}

/// Decides the next rollout step. `replicas` is what the StatefulSet runs now;
/// `scaling_down` says a node is being decommissioned or removed.
///
/// `observed.statefulset` must be the StatefulSet as this reconcile's apply returned it: a
/// template applied a moment ago has bumped its generation, and until the StatefulSet
/// controller has observed that generation its `updateRevision` still names the previous
/// template, so pods still running that one would count as up to date.
pub fn plan(names: &Names, observed: &Observed, replicas: i32, scaling_down: bool) -> RolloutStep {
    let in_range = || {
        observed.pods.iter().filter_map(|p| {
            let name = p.name_any();
            ordinal(names, "", &name)
                .filter(|o| *o < replicas)
                .map(|o| (o, p, name))
        })
    };
    let Some(revision) = observed
        .update_revision()
        .filter(|_| observed.statefulset_observed())
    else {
        // Which pods are outdated is unknown until then; none is known to be current.
        return RolloutStep::Wait {
            reason: "StatefulSetNotObserved",
            outdated: in_range().count(),
        };
    };
    let mut outdated: Vec<(i32, String)> = in_range()
        .filter(|(_, p, _)| p.labels().get(REVISION_LABEL).map(String::as_str) != Some(revision))
        .map(|(o, _, name)| (o, name))
        .collect();
    if outdated.is_empty() {
        return RolloutStep::UpToDate;
    }
    let count = outdated.len();
    let wait = |reason| RolloutStep::Wait {
        reason,
        outdated: count,
    };
    // Replacing a pod while another hands off its data would take two replicas of some
    // series away at once.
    if scaling_down {
        return wait("ScaleDownInProgress");
    }
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
    match &observed.ring {
        // Ready pods whose ring nobody could report may still owe each other hints: taking
        // one down then could lose the only copy of recent writes. Wait, as scale-down does.
        RingView::Unknown => return wait("NoRingView"),
        // No cluster API, no ring: pod readiness above is all there is to check.
        RingView::NotClustered => {}
        RingView::Members(members) => {
            if !members
                .iter()
                .filter(|m| !m.has_left())
                .all(|m| m.is_healthy())
            {
                return wait("RingUnhealthy");
            }
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

    /// Members tsc-0, tsc-1, … all active, owed these hint bytes.
    fn active_ring(pending_hints: &[u64]) -> RingView {
        RingView::Members(
            pending_hints
                .iter()
                .enumerate()
                .map(|(i, &pending_hints)| Member {
                    id: format!("tsc-{i}"),
                    state: "active".into(),
                    pending_hints,
                })
                .collect(),
        )
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
            ring: RingView::NotClustered,
        }
    }

    #[test]
    fn replaces_highest_outdated_ordinal_first() {
        let o = observed(&["old", "old", "new"]);
        assert_eq!(
            plan(&names(), &o, 3, false),
            RolloutStep::Replace {
                pod: "tsc-1".into()
            }
        );
        assert_eq!(
            plan(&names(), &observed(&["new", "new"]), 2, false),
            RolloutStep::UpToDate
        );
    }

    #[test]
    fn one_at_a_time_and_only_on_a_healthy_ring() {
        let mut o = observed(&["old", "old", "new"]);
        o.pods[2].status = None;
        assert_eq!(
            plan(&names(), &o, 3, false),
            RolloutStep::Wait {
                reason: "PodsNotReady",
                outdated: 2
            }
        );
        let mut o = observed(&["old", "new"]);
        o.ring = active_ring(&[0, 4]);
        assert_eq!(
            plan(&names(), &o, 2, false),
            RolloutStep::Wait {
                reason: "RingUnhealthy",
                outdated: 1
            }
        );
    }

    #[test]
    fn waits_until_the_statefulset_controller_has_seen_the_template() {
        // The apply just bumped the generation: updateRevision still names the template
        // every pod runs, so they only look up to date.
        let mut o = observed(&["old", "old", "old"]);
        let sts = o.statefulset.as_mut().unwrap();
        sts.metadata.generation = Some(4);
        let status = sts.status.as_mut().unwrap();
        status.observed_generation = Some(3);
        status.update_revision = Some("old".into());
        let not_observed = RolloutStep::Wait {
            reason: "StatefulSetNotObserved",
            outdated: 3,
        };
        assert_eq!(plan(&names(), &o, 3, false), not_observed);

        // A StatefulSet just created has no status at all.
        let mut fresh = observed(&["old", "old", "old"]);
        fresh.statefulset.as_mut().unwrap().metadata.generation = Some(1);
        fresh.statefulset.as_mut().unwrap().status = None;
        assert_eq!(plan(&names(), &fresh, 3, false), not_observed);
        fresh.statefulset = None;
        assert_eq!(plan(&names(), &fresh, 3, false), not_observed);

        // Observed: the new revision shows the pods outdated.
        let sts = o.statefulset.as_mut().unwrap();
        let status = sts.status.as_mut().unwrap();
        status.observed_generation = Some(4);
        status.update_revision = Some("new".into());
        assert_eq!(
            plan(&names(), &o, 3, false),
            RolloutStep::Replace {
                pod: "tsc-2".into()
            }
        );
    }

    #[test]
    fn waits_for_a_scale_down() {
        let o = observed(&["old", "old", "new"]);
        assert_eq!(
            plan(&names(), &o, 3, true),
            RolloutStep::Wait {
                reason: "ScaleDownInProgress",
                outdated: 2
            }
        );
        assert_eq!(
            plan(&names(), &observed(&["new", "new"]), 2, true),
            RolloutStep::UpToDate
        );
    }

    #[test]
    fn waits_when_no_node_could_report_the_ring() {
        let mut o = observed(&["old", "new"]);
        o.ring = RingView::Unknown;
        assert_eq!(
            plan(&names(), &o, 2, false),
            RolloutStep::Wait {
                reason: "NoRingView",
                outdated: 1
            }
        );
        // Nodes without a cluster API have no ring to wait for.
        o.ring = RingView::NotClustered;
        assert_eq!(
            plan(&names(), &o, 2, false),
            RolloutStep::Replace {
                pod: "tsc-0".into()
            }
        );
        o.ring = active_ring(&[0, 0]);
        assert_eq!(
            plan(&names(), &o, 2, false),
            RolloutStep::Replace {
                pod: "tsc-0".into()
            }
        );
    }
}
