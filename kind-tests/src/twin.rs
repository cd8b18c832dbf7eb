//! The local cluster twin: stands in for the kubelet and the StatefulSet controller so the
//! scenarios run without Kubernetes, while everything Strata-specific is the real thing.
//!
//! Each "pod" is a `strata-node` process started from the pod template the operator renders
//! (`resources::statefulset`): its command (the image maps to a binary), args with `$(VAR)`
//! expansion, env from the downward API and Secrets, and `config.yaml` from the rendered
//! ConfigMap. Substitutions, and nothing else, stand in for what a pod has and a process does
//! not: each pod gets its own loopback address (127.<run>.<twin>.<10+ordinal>, so every pod uses
//! the template's ports), pod DNS names resolve to those addresses, the listeners bind the pod
//! address instead of 0.0.0.0 (`STRATA_SERVER__BIND_ADDRESS`), and mount paths map to
//! directories (claims survive pod restarts, like PVCs). Scaling and rollouts are decided by
//! the operator's own planners (`scale::plan`, `rollout::plan`) and decommission goes through
//! its real HTTP node client.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodStatus, PodTemplateSpec};
use strata_operator::controller::node_api::{HttpNodeApi, NodeApi};
use strata_operator::controller::observed::{Observed, RingView};
use strata_operator::controller::rollout::{self, RolloutStep, REVISION_LABEL};
use strata_operator::controller::scale::{self, ScaleStep};
use strata_operator::crd::{MqttSpec, TimeSeriesCluster};
use strata_operator::resources::{configmap, statefulset, Names, ReplicaPlan};

use crate::broker::Mosquitto;
use crate::client::wait_until;
use crate::{Endpoints, Target};

/// How long a pod may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A Secret the twin can mount or read keys from.
pub type Secret = BTreeMap<String, String>;

struct TwinPod {
    child: Child,
    ip: Ipv4Addr,
    revision: String,
    binary: PathBuf,
}

/// A cluster of node processes on loopback addresses.
pub struct Twin {
    tsc: TimeSeriesCluster,
    names: Names,
    root: tempfile::TempDir,
    net: u8,
    subnet: u8,
    images: HashMap<String, PathBuf>,
    secrets: HashMap<String, Secret>,
    credentials: (String, String),
    pods: BTreeMap<i32, TwinPod>,
    replicas: i32,
    decommissioning: Vec<String>,
    next_service_pod: usize,
    runtime: tokio::runtime::Runtime,
    nodes: HttpNodeApi,
    /// The MQTT broker the spec names, when the twin runs one.
    broker: Option<Mosquitto>,
}

fn revision_of(template: &PodTemplateSpec) -> String {
    fnv(&serde_json::to_vec(template).unwrap_or_default())
}

/// FNV-1a: a stable short id, like the StatefulSet's revision hash.
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Twin {
    /// A twin of `tsc` (namespace set by the caller). `images` maps image names to binaries;
    /// `secrets` holds the Secrets the spec references; `credentials` is the TCP JSON user.
    pub fn new(
        mut tsc: TimeSeriesCluster,
        images: HashMap<String, PathBuf>,
        secrets: HashMap<String, Secret>,
        credentials: (String, String),
    ) -> Result<Twin> {
        if tsc.metadata.namespace.is_none() {
            tsc.metadata.namespace = Some("default".into());
        }
        tsc.metadata.uid = Some("twin".into());
        let names = Names::of(&tsc);
        // A second octet per process keeps concurrent runs on this machine apart, a third per
        // twin keeps the twins of one test process apart.
        static NEXT_TWIN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
        let net = 100 + (std::process::id() % 100) as u8;
        let subnet = NEXT_TWIN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Twin {
            tsc,
            names,
            root: tempfile::tempdir()?,
            net,
            subnet,
            images,
            secrets,
            credentials,
            pods: BTreeMap::new(),
            replicas: 0,
            decommissioning: Vec::new(),
            next_service_pod: 0,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            nodes: HttpNodeApi::new(),
            broker: None,
        })
    }

    fn ip(&self, ordinal: i32) -> Ipv4Addr {
        Ipv4Addr::new(127, self.net, self.subnet, 10 + ordinal as u8)
    }

    fn rendered(&self) -> Result<(StatefulSet, BTreeMap<String, String>)> {
        let cm = configmap(&self.tsc)?;
        let data = cm.data.unwrap_or_default();
        let plan = ReplicaPlan {
            replicas: self.replicas,
            config_hash: fnv(serde_json::to_string(&data)?.as_bytes()),
        };
        Ok((statefulset(&self.tsc, &plan), data))
    }

    fn template(&self) -> Result<(PodTemplateSpec, BTreeMap<String, String>)> {
        let (sts, data) = self.rendered()?;
        let template = sts
            .spec
            .ok_or_else(|| anyhow!("StatefulSet without spec"))?
            .template;
        Ok((template, data))
    }

    /// Directory standing in for a claim (`wal-<pod>`), kept across pod restarts.
    fn claim_dir(&self, template: &str, ordinal: i32) -> PathBuf {
        self.root
            .path()
            .join("claims")
            .join(self.names.pvc(template, ordinal))
    }

    /// Pod DNS names and mount paths become the twin's addresses and directories.
    fn substitute(&self, text: &str, mounts: &[(String, PathBuf)]) -> String {
        let mut out = text.to_string();
        for o in 0..self.replicas.max(8) {
            out = out.replace(&self.names.pod_dns(o), &self.ip(o).to_string());
        }
        for (path, dir) in mounts {
            out = out.replace(path.as_str(), &dir.display().to_string());
        }
        out
    }

    fn start_pod(&mut self, ordinal: i32) -> Result<()> {
        let (template, config) = self.template()?;
        let revision = revision_of(&template);
        let spec = template
            .spec
            .ok_or_else(|| anyhow!("template without pod spec"))?;
        let container: &Container = spec
            .containers
            .first()
            .ok_or_else(|| anyhow!("template without container"))?;
        let pod = self.names.pod(ordinal);
        let ip = self.ip(ordinal);
        let pod_dir = self.root.path().join("pods").join(&pod);
        let _ = fs::remove_dir_all(&pod_dir);
        fs::create_dir_all(&pod_dir)?;

        // Volumes: claims persist, ConfigMap and Secret volumes are written fresh.
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        let mut volume_files: Vec<(PathBuf, String)> = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let dir = if m.name == "wal" || m.name == "data" {
                self.claim_dir(&m.name, ordinal)
            } else {
                pod_dir.join("volumes").join(&m.name)
            };
            fs::create_dir_all(&dir)?;
            let volume = spec.volumes.iter().flatten().find(|v| v.name == m.name);
            if let Some(v) = volume {
                if v.config_map.is_some() {
                    for (k, text) in &config {
                        volume_files.push((dir.join(k), text.clone()));
                    }
                } else if let Some(s) = &v.secret {
                    let name = s.secret_name.clone().unwrap_or_default();
                    let secret = self
                        .secrets
                        .get(&name)
                        .ok_or_else(|| anyhow!("Secret {name} not given to the twin"))?;
                    for (k, text) in secret {
                        volume_files.push((dir.join(k), text.clone()));
                    }
                }
            }
            mounts.push((m.mount_path.clone(), dir));
        }
        // Longest mount path first, so /etc/strata/users wins over /etc/strata.
        mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        for (path, text) in volume_files {
            fs::write(&path, self.substitute(&text, &mounts))?;
        }

        // Environment from the downward API and Secrets, as the kubelet resolves it.
        let mut env: Vec<(String, String)> = Vec::new();
        for e in container.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                v.clone()
            } else if let Some(src) = &e.value_from {
                if let Some(f) = &src.field_ref {
                    match f.field_path.as_str() {
                        "metadata.name" => pod.clone(),
                        "metadata.namespace" => self.names.namespace.clone(),
                        "status.podIP" => ip.to_string(),
                        "spec.nodeName" => "twin".into(),
                        other => bail!("field {other} unknown to the twin"),
                    }
                } else if let Some(s) = &src.secret_key_ref {
                    self.secrets
                        .get(&s.name)
                        .and_then(|sec| sec.get(&s.key))
                        .cloned()
                        .ok_or_else(|| {
                            anyhow!("Secret {}/{} not given to the twin", s.name, s.key)
                        })?
                } else {
                    bail!("env {} has a source the twin does not know", e.name)
                }
            } else {
                String::new()
            };
            env.push((e.name.clone(), value));
        }
        let expand = |arg: &str| {
            let mut out = arg.to_string();
            for (k, v) in &env {
                out = out.replace(&format!("$({k})"), v);
            }
            out
        };
        let args: Vec<String> = container
            .args
            .iter()
            .flatten()
            .map(|a| self.substitute(&expand(a), &mounts))
            .collect();
        let image = container.image.clone().unwrap_or_default();
        let binary = self
            .images
            .get(&image)
            .cloned()
            .ok_or_else(|| anyhow!("image {image} has no binary in the twin"))?;
        let log = fs::File::create(pod_dir.join("log.txt"))?;
        let child = Command::new(&binary)
            .args(&args)
            .envs(env)
            .env("STRATA_SERVER__BIND_ADDRESS", ip.to_string())
            .env("RUST_LOG", "warn")
            .current_dir(&pod_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {pod} from {}", binary.display()))?;
        self.pods.insert(
            ordinal,
            TwinPod {
                child,
                ip,
                revision,
                binary,
            },
        );
        Ok(())
    }

    fn http_base(&self, ordinal: i32) -> String {
        format!("http://{}:{}", self.ip(ordinal), self.tsc.spec.ports.http)
    }

    fn pod_ready(&mut self, ordinal: i32) -> bool {
        let Some(p) = self.pods.get_mut(&ordinal) else {
            return false;
        };
        if !matches!(p.child.try_wait(), Ok(None)) {
            return false;
        }
        let url = format!("http://{}:{}/ready", p.ip, self.tsc.spec.ports.http);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        agent.get(&url).call().is_ok()
    }

    fn wait_ready(&mut self, ordinal: i32) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.pod_ready(ordinal) {
            if let Some(p) = self.pods.get_mut(&ordinal) {
                if let Ok(Some(status)) = p.child.try_wait() {
                    bail!(
                        "{} exited with {status}: {}",
                        self.names.pod(ordinal),
                        self.pod_log(ordinal)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready: {}",
                    self.names.pod(ordinal),
                    self.pod_log(ordinal)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// The end of a pod's log, for failure messages.
    pub fn pod_log(&self, ordinal: i32) -> String {
        let path = self
            .root
            .path()
            .join("pods")
            .join(self.names.pod(ordinal))
            .join("log.txt");
        let text = fs::read_to_string(path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then SIGKILL after the template's grace period, like the kubelet. Returns
    /// how the pod ended: `Ok(Some(status))` when it exited by itself within the grace
    /// period, `Ok(None)` when it had to be killed.
    fn stop_pod(&mut self, ordinal: i32) -> Result<Option<std::process::ExitStatus>> {
        let Some(mut p) = self.pods.remove(&ordinal) else {
            return Ok(None);
        };
        let grace = self
            .template()?
            .0
            .spec
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let pid = libc::pid_t::try_from(p.child.id()).context("pid")?;
        // SAFETY: kill(2) on the pid of a child we spawned and have not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(grace.max(1) as u64);
        loop {
            if let Some(status) = p.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                p.child.kill()?;
                p.child.wait()?;
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts a mosquitto broker on a loopback address of this twin and points the spec's
    /// MQTT ingest at it, as a cluster subscribed to an in-cluster broker. Call before
    /// [`Twin::start`].
    pub fn start_mqtt_broker(&mut self) -> Result<()> {
        let broker = Mosquitto::start(Ipv4Addr::new(127, self.net, self.subnet, 250))?;
        self.tsc.spec.mqtt = Some(MqttSpec {
            broker: broker.url(),
            topics: Vec::new(),
            username: None,
            password_secret: None,
        });
        self.broker = Some(broker);
        Ok(())
    }

    /// Starts the StatefulSet at the spec's replica count and waits until every pod is ready.
    pub fn start(&mut self) -> Result<()> {
        self.replicas = self.tsc.spec.replicas;
        for o in 0..self.replicas {
            self.start_pod(o)?;
        }
        for o in 0..self.replicas {
            self.wait_ready(o)?;
        }
        Ok(())
    }

    /// The binary pod `ordinal` runs now.
    pub fn pod_binary(&self, ordinal: i32) -> Option<&Path> {
        self.pods.get(&ordinal).map(|p| p.binary.as_path())
    }

    fn observed(&mut self) -> Result<Observed> {
        let (template, _) = self.template()?;
        let revision = revision_of(&template);
        let mut pods = Vec::new();
        let ordinals: Vec<i32> = self.pods.keys().copied().collect();
        for o in ordinals {
            let ready = self.pod_ready(o);
            let mut pod = Pod::default();
            pod.metadata.name = Some(self.names.pod(o));
            pod.metadata.labels =
                Some([(REVISION_LABEL.to_string(), self.pods[&o].revision.clone())].into());
            pod.status = Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            pods.push(pod);
        }
        let sts = StatefulSet {
            spec: Some(k8s_openapi::api::apps::v1::StatefulSetSpec {
                replicas: Some(self.replicas),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                update_revision: Some(revision),
                replicas: self.replicas,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut ring = RingView::Unknown;
        for o in 0..self.replicas {
            let base = self.http_base(o);
            if let Ok(m) = self.runtime.block_on(self.nodes.members(&base)) {
                ring = m.into();
                break;
            }
        }
        Ok(Observed {
            statefulset: Some(sts),
            pods,
            pvcs: Vec::new(),
            ring,
        })
    }

    fn drive<F>(&mut self, what: &str, timeout: Duration, mut step: F) -> Result<()>
    where
        F: FnMut(&mut Twin, &Observed) -> Result<bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let observed = self.observed()?;
            if step(self, &observed)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("timed out: {what}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        for p in self.pods.values_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

impl Target for Twin {
    fn endpoints(&mut self) -> Result<Endpoints> {
        // The Service: round-robin over ready pods.
        let ordinals: Vec<i32> = self.pods.keys().copied().collect();
        for _ in 0..ordinals.len() {
            let o = ordinals[self.next_service_pod % ordinals.len()];
            self.next_service_pod += 1;
            if self.pod_ready(o) {
                let ip = self.ip(o);
                let p = &self.tsc.spec.ports;
                return Ok(Endpoints {
                    http: format!("http://{ip}:{}", p.http),
                    tcp_json: format!("{ip}:{}", p.tcp),
                    binary: format!("{ip}:{}", p.binary),
                    mqtt: self.tsc.spec.mqtt.as_ref().map(|m| m.broker.clone()),
                });
            }
        }
        bail!("the Service has no ready endpoint")
    }

    fn credentials(&self) -> (String, String) {
        self.credentials.clone()
    }

    fn kill_pod(&mut self, ordinal: i32) -> Result<()> {
        let p = self
            .pods
            .get_mut(&ordinal)
            .ok_or_else(|| anyhow!("no pod {ordinal}"))?;
        p.child.kill()?;
        p.child.wait()?;
        // The StatefulSet controller re-creates the pod from the current template.
        self.start_pod(ordinal)?;
        self.wait_ready(ordinal)
    }

    fn roll_image(&mut self, image: &str) -> Result<()> {
        self.tsc.spec.image = image.to_string();
        let names = self.names.clone();
        self.drive(
            "rollout",
            Duration::from_secs(300),
            |twin, observed| match rollout::plan(&names, observed, twin.replicas, false) {
                RolloutStep::UpToDate => {
                    let all: Vec<i32> = twin.pods.keys().copied().collect();
                    Ok(all.into_iter().all(|o| twin.pod_ready(o)))
                }
                RolloutStep::Replace { pod } => {
                    let o = names_ordinal(&names, &pod)?;
                    twin.stop_pod(o)?;
                    twin.start_pod(o)?;
                    Ok(false)
                }
                RolloutStep::Wait { .. } => Ok(false),
            },
        )
    }

    fn scale(&mut self, replicas: i32) -> Result<()> {
        self.tsc.spec.replicas = replicas;
        let tsc = self.tsc.clone();
        self.drive("scaling", Duration::from_secs(600), |twin, observed| {
            let step = scale::plan(&tsc, observed, &twin.decommissioning);
            match &step {
                ScaleStep::Steady => {
                    let all: Vec<i32> = twin.pods.keys().copied().collect();
                    return Ok(all.into_iter().all(|o| twin.pod_ready(o)));
                }
                ScaleStep::Up { to, .. } => {
                    let from = twin.replicas;
                    twin.replicas = *to;
                    for o in from..*to {
                        twin.start_pod(o)?;
                    }
                }
                ScaleStep::Decommission { ordinal } => {
                    let base = twin.http_base(*ordinal);
                    twin.runtime.block_on(twin.nodes.decommission(&base))?;
                    twin.decommissioning.push(twin.names.pod(*ordinal));
                }
                ScaleStep::Shrink { ordinal } => {
                    twin.stop_pod(*ordinal)?;
                    twin.replicas = *ordinal;
                    twin.decommissioning
                        .retain(|p| *p != twin.names.pod(*ordinal));
                    for t in ["wal", "data"] {
                        let _ = fs::remove_dir_all(twin.claim_dir(t, *ordinal));
                    }
                }
                ScaleStep::AwaitDecommission { .. } | ScaleStep::Blocked { .. } => {}
            }
            Ok(false)
        })
    }

    fn uninstall(&mut self) -> Result<()> {
        // Deleting the TimeSeriesCluster deletes its StatefulSet: the kubelet stops every pod
        // with SIGTERM and kills what is still running after the grace period. A node must
        // drain and exit cleanly inside it.
        let ordinals: Vec<i32> = self.pods.keys().copied().collect();
        for o in ordinals {
            let pod = self.names.pod(o);
            let base = self.http_base(o);
            match self.stop_pod(o)? {
                Some(status) if status.success() => {}
                Some(status) => bail!("{pod} exited with {status} on SIGTERM"),
                None => bail!("{pod} did not exit within its grace period after SIGTERM"),
            }
            ensure!(
                ureq::get(&format!("{base}/health")).call().is_err(),
                "{pod} still answers on {base} after it exited"
            );
        }
        self.replicas = 0;
        Ok(())
    }

    fn clustered(&mut self) -> Result<bool> {
        let base = self.http_base(0);
        Ok(matches!(
            self.runtime.block_on(self.nodes.members(&base)),
            Ok(Some(_))
        ))
    }
}

fn names_ordinal(names: &Names, pod: &str) -> Result<i32> {
    strata_operator::controller::observed::ordinal(names, "", pod)
        .ok_or_else(|| anyhow!("{pod} is not a pod of {}", names.cluster))
}

/// Waits until `f` holds, for scenario code that polls the twin.
pub fn eventually(what: &str, f: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_until(what, Duration::from_secs(30), f)
}
