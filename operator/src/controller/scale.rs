//! Scaling decisions. Scale-up is immediate; scale-down removes the highest ordinal first and
//! shrinks the StatefulSet only once that node reports `left`, i.e. its data lives on other
//! owners. One node leaves at a time, and a departure starts only on a healthy ring.

use super::observed::{Observed, RingView};
use crate::crd::TimeSeriesCluster;
use crate::resources::Names;

/// What to do about the replica count in this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleStep {
    /// Replicas already match the spec.
    Steady,
    /// Create the StatefulSet, or raise its replicas.
    Up { from: i32, to: i32 },
    /// Ask pod `ordinal` to hand off its data and leave.
    Decommission { ordinal: i32 },
    /// Pod `ordinal` is handing off; poll again later.
    AwaitDecommission { ordinal: i32 },
    /// Pod `ordinal` has left: shrink the StatefulSet past it.
    Shrink { ordinal: i32 },
    /// A scale-down is due but the ring is not healthy enough to lose a node.
    Blocked { reason: &'static str },
}

impl ScaleStep {
    /// StatefulSet replicas to apply with this step.
    pub fn replicas(&self, tsc: &TimeSeriesCluster, observed: &Observed) -> i32 {
        let current = observed.current_replicas();
        match self {
            ScaleStep::Steady | ScaleStep::Up { .. } => tsc.spec.replicas,
            ScaleStep::Shrink { ordinal } => *ordinal,
            ScaleStep::Decommission { .. }
            | ScaleStep::AwaitDecommission { .. }
            | ScaleStep::Blocked { .. } => current.unwrap_or(tsc.spec.replicas),
        }
    }

    /// A scale operation is under way.
    pub fn is_progressing(&self) -> bool {
        !matches!(self, ScaleStep::Steady)
    }
}

/// Decides the next scaling step. `decommissioning` lists the pods this operator already
/// asked to leave (from the status), so a pod that has vanished from the ring counts as left.
pub fn plan(tsc: &TimeSeriesCluster, observed: &Observed, decommissioning: &[String]) -> ScaleStep {
    let desired = tsc.spec.replicas;
    let Some(current) = observed.current_replicas() else {
        return ScaleStep::Up {
            from: 0,
            to: desired,
        };
    };
    if current < desired {
        return ScaleStep::Up {
            from: current,
            to: desired,
        };
    }
    if current == desired {
        return ScaleStep::Steady;
    }
    let names = Names::of(tsc);
    let ordinal = current - 1;
    let pod = names.pod(ordinal);
    let asked = decommissioning.contains(&pod);
    let members = match &observed.ring {
        RingView::Members(m) => m,
        RingView::Unknown => {
            return ScaleStep::Blocked {
                reason: "NoRingView",
            }
        }
        // Without a cluster API a node cannot hand its data off.
        RingView::NotClustered => {
            return ScaleStep::Blocked {
                reason: "NotClustered",
            }
        }
    };
    match observed.member_state(&pod) {
        Some("left") => ScaleStep::Shrink { ordinal },
        None if asked => ScaleStep::Shrink { ordinal },
        Some("leaving") => ScaleStep::AwaitDecommission { ordinal },
        _ if asked => ScaleStep::AwaitDecommission { ordinal },
        _ => {
            // Every other member must be active with no hints owed, and every remaining pod
            // ready: otherwise handing data off could leave a series under-replicated.
            let others_healthy = members
                .iter()
                .filter(|m| m.id != pod && !m.has_left())
                .all(|m| m.is_healthy());
            let ready = observed.ready_pods().count() as i32;
            if !others_healthy {
                ScaleStep::Blocked {
                    reason: "RingUnhealthy",
                }
            } else if ready < current {
                ScaleStep::Blocked {
                    reason: "PodsNotReady",
                }
            } else {
                ScaleStep::Decommission { ordinal }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::node_api::Member;
    use crate::controller::test_support::{ready_pod, sts};
    use crate::resources::test_support::cluster;

    fn members(states: &[(&str, &str)]) -> RingView {
        RingView::Members(
            states
                .iter()
                .map(|(id, s)| Member {
                    id: id.to_string(),
                    state: s.to_string(),
                    pending_hints: 0,
                })
                .collect(),
        )
    }

    fn observed(replicas: i32, ring: RingView) -> Observed {
        Observed {
            statefulset: Some(sts(replicas, "r1")),
            pods: (0..replicas)
                .map(|i| ready_pod(&format!("tsc-{i}"), "r1"))
                .collect(),
            pvcs: Vec::new(),
            ring,
        }
    }

    #[test]
    fn create_and_scale_up_are_immediate() {
        let tsc = cluster("tsc", "replicas: 5");
        assert_eq!(
            plan(&tsc, &Observed::default(), &[]),
            ScaleStep::Up { from: 0, to: 5 }
        );
        let step = plan(&tsc, &observed(3, RingView::Unknown), &[]);
        assert_eq!(step, ScaleStep::Up { from: 3, to: 5 });
        assert_eq!(step.replicas(&tsc, &observed(3, RingView::Unknown)), 5);
    }

    #[test]
    fn scale_down_walks_highest_ordinal_through_decommission() {
        let tsc = cluster("tsc", "replicas: 3");
        let active = [
            ("tsc-0", "active"),
            ("tsc-1", "active"),
            ("tsc-2", "active"),
            ("tsc-3", "active"),
            ("tsc-4", "active"),
        ];
        let o = observed(5, members(&active));
        let step = plan(&tsc, &o, &[]);
        assert_eq!(step, ScaleStep::Decommission { ordinal: 4 });
        assert_eq!(step.replicas(&tsc, &o), 5, "no shrink before hand-off");

        let mut ring = active;
        ring[4].1 = "leaving";
        let o = observed(5, members(&ring));
        assert_eq!(
            plan(&tsc, &o, &["tsc-4".into()]),
            ScaleStep::AwaitDecommission { ordinal: 4 }
        );

        ring[4].1 = "left";
        let o = observed(5, members(&ring));
        let step = plan(&tsc, &o, &["tsc-4".into()]);
        assert_eq!(step, ScaleStep::Shrink { ordinal: 4 });
        assert_eq!(step.replicas(&tsc, &o), 4);

        // Gone from the ring after we asked it to leave: also left.
        let o = observed(4, members(&active[..3]));
        assert_eq!(
            plan(&tsc, &o, &["tsc-3".into()]),
            ScaleStep::Shrink { ordinal: 3 }
        );
    }

    #[test]
    fn members_that_left_earlier_do_not_block_the_next_departure() {
        // 5 → 3: tsc-4 left in the first step and gossip still lists it as `left`.
        let tsc = cluster("tsc", "replicas: 3");
        let o = observed(
            4,
            members(&[
                ("tsc-0", "active"),
                ("tsc-1", "active"),
                ("tsc-2", "active"),
                ("tsc-3", "active"),
                ("tsc-4", "left"),
            ]),
        );
        assert_eq!(plan(&tsc, &o, &[]), ScaleStep::Decommission { ordinal: 3 });
    }

    #[test]
    fn scale_down_waits_for_a_healthy_ring() {
        let tsc = cluster("tsc", "replicas: 3");
        let o = observed(
            4,
            members(&[
                ("tsc-0", "active"),
                ("tsc-1", "joining"),
                ("tsc-2", "active"),
                ("tsc-3", "active"),
            ]),
        );
        assert_eq!(
            plan(&tsc, &o, &[]),
            ScaleStep::Blocked {
                reason: "RingUnhealthy"
            }
        );
        let mut ring = members(&[
            ("tsc-0", "active"),
            ("tsc-1", "active"),
            ("tsc-2", "active"),
            ("tsc-3", "active"),
        ]);
        if let RingView::Members(m) = &mut ring {
            m[0].pending_hints = 10;
        }
        assert_eq!(
            plan(&tsc, &observed(4, ring), &[]),
            ScaleStep::Blocked {
                reason: "RingUnhealthy"
            }
        );
        assert_eq!(
            plan(&tsc, &observed(4, RingView::Unknown), &[]),
            ScaleStep::Blocked {
                reason: "NoRingView"
            }
        );
        let mut o = observed(
            4,
            members(&[
                ("tsc-0", "active"),
                ("tsc-1", "active"),
                ("tsc-2", "active"),
                ("tsc-3", "active"),
            ]),
        );
        o.pods.remove(1);
        assert_eq!(
            plan(&tsc, &o, &[]),
            ScaleStep::Blocked {
                reason: "PodsNotReady"
            }
        );
    }
}
