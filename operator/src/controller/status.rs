//! The status the controller writes: phase, conditions with reasons, counts and members.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::observed::Observed;
use super::rollout::RolloutStep;
use super::scale::ScaleStep;
use crate::crd::{MemberStatus, Phase, TimeSeriesCluster, TimeSeriesClusterStatus};

/// What this reconcile decided, summarised for the status.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The scaling step taken.
    pub scale: ScaleStep,
    /// The rollout step taken.
    pub rollout: RolloutStep,
    /// Volume templates being expanded.
    pub expanding: bool,
    /// A problem needing a human (e.g. a StorageClass that cannot expand).
    pub blocked: Option<(String, String)>,
    /// Pods asked to leave and not yet removed.
    pub decommissioning: Vec<String>,
}

fn condition(
    old: &TimeSeriesClusterStatus,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" };
    // The transition time moves only when the status flips, as Kubernetes' conventions ask.
    let last_transition_time = old
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The new status from the observed state and this reconcile's decisions.
pub fn compute(
    tsc: &TimeSeriesCluster,
    observed: &Observed,
    progress: &Progress,
    selector: String,
    now: Time,
) -> TimeSeriesClusterStatus {
    let old = tsc.status.clone().unwrap_or_default();
    let generation = tsc.metadata.generation;
    let desired = tsc.spec.replicas;
    let ready = observed.ready_pods().count() as i32;
    let unhealthy_members: Vec<&str> = observed
        .ring
        .members()
        .iter()
        .filter(|m| m.state != "left" && m.state != "leaving" && !m.is_healthy())
        .map(|m| m.id.as_str())
        .collect();

    let (progressing, p_reason, p_message) = match (&progress.scale, &progress.rollout) {
        (ScaleStep::Up { from, to }, _) => (true, "ScalingUp", format!("{from} → {to} nodes")),
        (ScaleStep::Decommission { ordinal } | ScaleStep::AwaitDecommission { ordinal }, _) => (
            true,
            "Decommissioning",
            format!("node {ordinal} is handing its data off before removal"),
        ),
        (ScaleStep::Shrink { ordinal }, _) => {
            (true, "ScalingDown", format!("removing node {ordinal}"))
        }
        (ScaleStep::Blocked { reason }, _) => (
            true,
            *reason,
            "scale-down waits for a healthy ring".to_string(),
        ),
        (_, RolloutStep::Replace { pod }) => (true, "RollingUpdate", format!("replacing {pod}")),
        (_, RolloutStep::Wait { reason, outdated }) => (
            true,
            *reason,
            format!("{outdated} pod(s) wait for the new template"),
        ),
        _ if progress.expanding => (
            true,
            "ExpandingVolumes",
            "claims are being resized".to_string(),
        ),
        _ => (false, "Stable", "nothing to do".to_string()),
    };

    let (degraded, d_reason, d_message) = if let Some((reason, message)) = &progress.blocked {
        (true, reason.as_str(), message.clone())
    } else if !unhealthy_members.is_empty() {
        (
            true,
            "MembersUnhealthy",
            format!("not active or owed hints: {}", unhealthy_members.join(", ")),
        )
    } else if observed.statefulset.is_some() && ready < desired.min(observed.pods.len() as i32) {
        (
            true,
            "PodsNotReady",
            format!("{ready} of {desired} nodes ready"),
        )
    } else {
        (false, "AsExpected", "all nodes healthy".to_string())
    };

    let is_ready = ready >= desired && !degraded;
    let (r_reason, r_message) = if is_ready {
        ("AllNodesReady", format!("{ready} of {desired} nodes ready"))
    } else {
        ("NodesNotReady", format!("{ready} of {desired} nodes ready"))
    };

    let phase = if tsc.metadata.deletion_timestamp.is_some() {
        Phase::Terminating
    } else if ready == 0 {
        Phase::Pending
    } else if progress.scale.is_progressing() {
        Phase::Scaling
    } else if !matches!(progress.rollout, RolloutStep::UpToDate) {
        Phase::Upgrading
    } else if degraded {
        Phase::Degraded
    } else {
        Phase::Running
    };

    TimeSeriesClusterStatus {
        phase: Some(phase),
        replicas: observed.pods.len() as i32,
        ready_replicas: ready,
        selector: Some(selector),
        observed_generation: generation,
        conditions: vec![
            condition(
                &old, "Ready", is_ready, r_reason, r_message, generation, &now,
            ),
            condition(
                &old,
                "Progressing",
                progressing,
                p_reason,
                p_message,
                generation,
                &now,
            ),
            condition(
                &old, "Degraded", degraded, d_reason, d_message, generation, &now,
            ),
        ],
        members: observed
            .ring
            .members()
            .iter()
            .map(|m| MemberStatus {
                name: m.id.clone(),
                state: m.state.clone(),
            })
            .collect(),
        decommissioning: progress.decommissioning.clone(),
        // `UpToDate` means the StatefulSet controller has seen the current template and every
        // pod runs its revision; while volumes are expanding the StatefulSet is being
        // re-created and nothing is known.
        current_image: if matches!(progress.rollout, RolloutStep::UpToDate) && !progress.expanding {
            Some(tsc.spec.image.clone())
        } else {
            old.current_image
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::test_support::{ready_pod, sts};
    use crate::resources::test_support::cluster;

    fn steady() -> Progress {
        Progress {
            scale: ScaleStep::Steady,
            rollout: RolloutStep::UpToDate,
            expanding: false,
            blocked: None,
            decommissioning: Vec::new(),
        }
    }

    fn now(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn cond<'a>(s: &'a TimeSeriesClusterStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn running_cluster_is_ready_and_keeps_transition_times() {
        let mut tsc = cluster("tsc", "replicas: 2");
        let o = Observed {
            statefulset: Some(sts(2, "r")),
            pods: vec![ready_pod("tsc-0", "r"), ready_pod("tsc-1", "r")],
            ..Default::default()
        };
        let s = compute(&tsc, &o, &steady(), "a=b".into(), now(100));
        assert_eq!(s.phase, Some(Phase::Running));
        assert_eq!(s.ready_replicas, 2);
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "Progressing").reason, "Stable");
        assert_eq!(cond(&s, "Degraded").status, "False");
        tsc.status = Some(s);
        let again = compute(&tsc, &o, &steady(), "a=b".into(), now(200));
        assert_eq!(cond(&again, "Ready").last_transition_time, now(100));
    }

    #[test]
    fn scaling_and_degraded_reasons() {
        let tsc = cluster("tsc", "replicas: 2");
        let o = Observed {
            statefulset: Some(sts(3, "r")),
            pods: vec![
                ready_pod("tsc-0", "r"),
                ready_pod("tsc-1", "r"),
                ready_pod("tsc-2", "r"),
            ],
            ..Default::default()
        };
        let p = Progress {
            scale: ScaleStep::AwaitDecommission { ordinal: 2 },
            decommissioning: vec!["tsc-2".into()],
            ..steady()
        };
        let s = compute(&tsc, &o, &p, String::new(), now(1));
        assert_eq!(s.phase, Some(Phase::Scaling));
        assert_eq!(cond(&s, "Progressing").reason, "Decommissioning");
        assert_eq!(s.decommissioning, ["tsc-2"]);

        let mut o = o;
        o.pods[1].status = None;
        let s = compute(
            &cluster("tsc", "replicas: 3"),
            &o,
            &steady(),
            String::new(),
            now(1),
        );
        assert_eq!(s.phase, Some(Phase::Degraded));
        assert_eq!(cond(&s, "Degraded").reason, "PodsNotReady");
        assert_eq!(cond(&s, "Ready").status, "False");
    }

    #[test]
    fn current_image_moves_only_once_the_rollout_is_done() {
        let mut tsc = cluster("tsc", "replicas: 1\nimage: strata:new");
        tsc.status = Some(TimeSeriesClusterStatus {
            current_image: Some("strata:old".into()),
            ..Default::default()
        });
        let o = Observed {
            statefulset: Some(sts(1, "r")),
            pods: vec![ready_pod("tsc-0", "r")],
            ..Default::default()
        };
        let waiting = Progress {
            rollout: RolloutStep::Wait {
                reason: "StatefulSetNotObserved",
                outdated: 1,
            },
            ..steady()
        };
        let s = compute(&tsc, &o, &waiting, String::new(), now(1));
        assert_eq!(s.current_image.as_deref(), Some("strata:old"));
        assert_eq!(s.phase, Some(Phase::Upgrading));
        assert_eq!(cond(&s, "Progressing").reason, "StatefulSetNotObserved");
        let expanding = Progress {
            expanding: true,
            ..steady()
        };
        let s = compute(&tsc, &o, &expanding, String::new(), now(1));
        assert_eq!(s.current_image.as_deref(), Some("strata:old"));
        let s = compute(&tsc, &o, &steady(), String::new(), now(1));
        assert_eq!(s.current_image.as_deref(), Some("strata:new"));
    }
}
