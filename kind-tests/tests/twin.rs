//! The end-to-end scenarios against the local cluster twin (see `src/twin.rs`): node
//! processes started from the pod template the operator renders.
//!
//! One single-node scenario and one 3-node scenario at RF 3 (kill a pod, rollout,
//! 3 → 5 → 3, uninstall), both through the same code the kind tests run. Each twin
//! subscribes to a real mosquitto broker (`apt-get install mosquitto`), as a cluster to an
//! in-cluster broker, so the scenarios ingest over MQTT too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use strata_e2e::client::workspace_binary;
use strata_e2e::scenarios::{self, Ledger};
use strata_e2e::twin::{Secret, Twin};
use strata_e2e::Target;
use strata_operator::crd::TimeSeriesCluster;

const USER: &str = "e2e";
const PASSWORD: &str = "e2e-password";

struct Binaries {
    node: PathBuf,
    stratactl: PathBuf,
    /// A copy of the node binary standing in for a second image.
    node_v2: PathBuf,
    _dir: tempfile::TempDir,
}

fn binaries() -> Binaries {
    let node = workspace_binary("strata-node", "STRATA_NODE_BIN").unwrap();
    let stratactl = workspace_binary("stratactl", "STRATACTL_BIN").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node_v2 = dir.path().join("strata-node-v2");
    std::fs::copy(&node, &node_v2).unwrap();
    Binaries {
        node,
        stratactl,
        node_v2,
        _dir: dir,
    }
}

fn twin(spec: &str, bins: &Binaries) -> Twin {
    let tsc: TimeSeriesCluster = serde_yaml::from_str(&format!(
        "apiVersion: strata.dev/v1alpha1\nkind: TimeSeriesCluster\nmetadata: {{name: strata, namespace: e2e}}\nspec:\n{spec}"
    ))
    .unwrap();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let users: Secret = [(
        "users.yaml".to_string(),
        format!("- username: {USER}\n  password_hash: \"{hash}\"\n  roles: [read, write, admin]\n"),
    )]
    .into();
    let images = HashMap::from([
        ("strata-node:v1".to_string(), bins.node.clone()),
        ("strata-node:v2".to_string(), bins.node_v2.clone()),
    ]);
    Twin::new(
        tsc,
        images,
        HashMap::from([("strata-users".to_string(), users)]),
        (USER.into(), PASSWORD.into()),
    )
    .unwrap()
}

fn run(t: &mut Twin, steps: impl FnOnce(&mut Twin) -> Result<()>) {
    if let Err(e) = steps(t) {
        let logs: Vec<String> = (0..5)
            .map(|o| format!("--- pod {o}\n{}", t.pod_log(o)))
            .collect();
        panic!("{e:#}\n{}", logs.join("\n"));
    }
}

const SPEC_COMMON: &str =
    "  image: strata-node:v1\n  usersSecret: {name: strata-users, key: users.yaml}\n";

#[test]
fn single_node_ingest_kill_and_rollout() {
    let bins = binaries();
    let mut t = twin(
        &format!("  replicas: 1\n  replicationFactor: 1\n{SPEC_COMMON}"),
        &bins,
    );
    run(&mut t, |t| {
        t.start_mqtt_broker()?;
        t.start()?;
        let mut ledger = Ledger::new(&bins.stratactl);
        scenarios::ingest_every_protocol(t, &mut ledger)?;
        scenarios::kill_and_restart(t, &mut ledger, 0)?;
        scenarios::roll_image(t, &mut ledger, "strata-node:v2")?;
        anyhow::ensure!(
            t.pod_binary(0) == Some(Path::new(&bins.node_v2)),
            "pod 0 does not run the new image"
        );
        scenarios::uninstall(t)
    });
}

#[test]
fn three_nodes_kill_rollout_and_scale_3_5_3() {
    let bins = binaries();
    let mut t = twin(
        &format!("  replicas: 3\n  replicationFactor: 3\n{SPEC_COMMON}"),
        &bins,
    );
    run(&mut t, |t| {
        t.start_mqtt_broker()?;
        t.start()?;
        anyhow::ensure!(
            t.clustered()?,
            "strata-node serves no /api/v1/cluster/members: the multi-node scenarios need it"
        );
        let mut ledger = Ledger::new(&bins.stratactl);
        scenarios::ingest_every_protocol(t, &mut ledger)?;
        scenarios::kill_and_restart(t, &mut ledger, 1)?;
        scenarios::roll_image(t, &mut ledger, "strata-node:v2")?;
        scenarios::scale_up_and_down(t, &mut ledger)?;
        scenarios::uninstall(t)
    });
}
