//! The committed CRD YAML matches the Rust types, and the example resources deserialize into
//! them. (The examples are also validated against the YAML's schema by `charts/check.sh`.)

use std::path::{Path, PathBuf};

use strata_operator::crd::{crd_yaml, TimeSeriesCluster, CRD_FILE};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_match_the_types() {
    let want = crd_yaml().unwrap();
    for dir in ["crds", "charts/strata/crds"] {
        let path = repo().join(dir).join(CRD_FILE);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date: run `cargo run -p operator --bin crdgen -- --out-dir crds` \
             and copy it to charts/strata/crds/",
            path.display()
        );
    }
}

#[test]
fn crd_has_subresources_columns_and_rules() {
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "strata.dev");
    assert_eq!(spec["names"]["shortNames"][0], "tsc");
    assert_eq!(spec["scope"], "Namespaced");
    let v = &spec["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert!(v["subresources"]["status"].is_object());
    assert_eq!(
        v["subresources"]["scale"]["specReplicasPath"],
        ".spec.replicas"
    );
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Replicas", "Ready", "Phase", "Age"]);
    let text = crd_yaml().unwrap();
    assert!(text.contains("self.replicationFactor <= self.replicas"));
    assert!(text.contains("quantity(self).compareTo(quantity(oldSelf)) >= 0"));
}

#[test]
fn examples_deserialize() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let tsc: TimeSeriesCluster =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            tsc.spec.replication_factor <= tsc.spec.replicas,
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 2, "examples missing in {}", dir.display());
}

fn tsc(spec: &str) -> TimeSeriesCluster {
    serde_yaml::from_str(&format!(
        "apiVersion: strata.dev/v1alpha1\nkind: TimeSeriesCluster\nmetadata: {{name: t}}\nspec: {spec}"
    ))
    .unwrap()
}

#[test]
fn cel_rules_refuse_what_the_api_server_must_refuse() {
    use kube::core::cel::{validate_cel, validate_cel_update};
    assert!(validate_cel(&tsc("{replicas: 3, replicationFactor: 3}")).is_ok());
    let err = validate_cel(&tsc("{replicas: 2, replicationFactor: 3}")).unwrap_err();
    assert!(
        format!("{err:?}").contains("replicationFactor must not exceed replicas"),
        "{err:?}"
    );
    assert!(validate_cel(&tsc("{storage: {data: {size: lots}}}")).is_err());

    let old = tsc("{storage: {data: {size: 10Gi}, wal: {size: 2Gi}}}");
    let grown = tsc("{storage: {data: {size: 20Gi}, wal: {size: 2Gi}}}");
    assert!(validate_cel_update(&grown, &old).is_ok());
    let err = validate_cel_update(&old, &grown).unwrap_err();
    assert!(
        format!("{err:?}").contains("volume size can only grow"),
        "{err:?}"
    );
    let same_in_other_units = tsc("{storage: {data: {size: 10240Mi}, wal: {size: 2Gi}}}");
    assert!(validate_cel_update(&same_in_other_units, &old).is_ok());

    let classed = tsc("{storage: {data: {size: 10Gi, storageClassName: fast}}}");
    let reclassed = tsc("{storage: {data: {size: 10Gi, storageClassName: slow}}}");
    assert!(validate_cel_update(&reclassed, &classed).is_err());
}
