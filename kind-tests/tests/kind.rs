//! The end-to-end scenarios on a real Kubernetes cluster, driven by `kind-tests/run.sh`.
//! Runs only when `STRATA_E2E_KIND=1` (the script sets it once the chart is installed);
//! otherwise it says so and does nothing. When it runs, every scenario runs: nothing is
//! skipped.

use strata_e2e::client::workspace_binary;
use strata_e2e::kind::KindTarget;
use strata_e2e::scenarios::{self, Ledger};
use strata_e2e::Target;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

#[test]
fn scenarios_on_kubernetes() {
    if std::env::var("STRATA_E2E_KIND").as_deref() != Ok("1") {
        eprintln!(
            "*** SKIPPED: set STRATA_E2E_KIND=1 (kind-tests/run.sh does) to run on a cluster ***"
        );
        return;
    }
    let ns = env("STRATA_E2E_NAMESPACE", "strata-e2e");
    let creds = (
        env("STRATA_E2E_USER", "e2e"),
        env("STRATA_E2E_PASSWORD", "e2e-password"),
    );
    let image = env("STRATA_E2E_IMAGE", "strata-node:e2e");
    let new_image = env("STRATA_E2E_NEW_IMAGE", "strata-node:e2e-v2");
    let stratactl = workspace_binary("stratactl", "STRATACTL_BIN").unwrap();
    // run.sh deploys mosquitto as the Service `mosquitto` in the namespace.
    let broker_service = env("STRATA_E2E_MQTT_SERVICE", "mosquitto");
    let common = format!(
        "  image: {image}\n  imagePullPolicy: Never\n  usersSecret: {{name: strata-users, key: users.yaml}}\n  storage: {{wal: {{size: 256Mi}}, data: {{size: 1Gi}}}}\n  mqtt: {{broker: \"tcp://{broker_service}:1883\"}}\n"
    );

    // The sample cluster the script applied: one node.
    let mut single = KindTarget::new(&ns, &env("STRATA_E2E_CLUSTER", "strata"), creds.clone())
        .with_mqtt_broker(&broker_service);
    single.wait_steady(1).unwrap();
    let mut ledger = Ledger::new(&stratactl);
    scenarios::ingest_every_protocol(&mut single, &mut ledger).unwrap();
    scenarios::kill_and_restart(&mut single, &mut ledger, 0).unwrap();
    scenarios::roll_image(&mut single, &mut ledger, &new_image).unwrap();
    let clustered = single.clustered().unwrap();
    drop(single);

    // Asked to run on a cluster, the multi-node scenarios (rollout one pod at a time, scaling
    // through decommission) are the point: a build whose nodes serve no cluster API fails
    // here rather than passing with half the scenarios skipped.
    assert!(
        clustered,
        "the nodes serve no /api/v1/cluster/members: the multi-node scenarios cannot run"
    );
    let mut ha = KindTarget::new(&ns, "strata-ha", creds).with_mqtt_broker(&broker_service);
    ha.apply(&format!("  replicas: 3\n  replicationFactor: 3\n{common}"))
        .unwrap();
    ha.wait_steady(3).unwrap();
    let mut ledger = Ledger::new(&stratactl);
    scenarios::ingest_every_protocol(&mut ha, &mut ledger).unwrap();
    scenarios::kill_and_restart(&mut ha, &mut ledger, 1).unwrap();
    scenarios::roll_image(&mut ha, &mut ledger, &image).unwrap();
    scenarios::scale_up_and_down(&mut ha, &mut ledger).unwrap();
    scenarios::uninstall(&mut ha).unwrap();
}
