//! The scenarios' target on a real Kubernetes cluster (kind in CI), driven through `kubectl`:
//! the operator does the work, the target only changes the resource and waits for its status.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::client::wait_until;
use crate::{Endpoints, Target};

/// Local ports the port-forward to the client Service listens on.
const LOCAL_HTTP: u16 = 18181;
const LOCAL_TCP: u16 = 15433;
const LOCAL_BINARY: u16 = 19876;
/// Local port of the port-forward to the MQTT broker's Service.
const LOCAL_MQTT: u16 = 11883;

/// A `TimeSeriesCluster` on the cluster `kubectl` points at.
pub struct KindTarget {
    namespace: String,
    name: String,
    credentials: (String, String),
    forward: Option<Child>,
    /// Service (port 1883) of the broker the cluster subscribes to, and its port-forward.
    mqtt_service: Option<String>,
    mqtt_forward: Option<Child>,
    timeout: Duration,
}

fn kubectl(args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .context("running kubectl")?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl KindTarget {
    /// The cluster `namespace/name`, whose TCP JSON user is `credentials`.
    pub fn new(namespace: &str, name: &str, credentials: (String, String)) -> KindTarget {
        KindTarget {
            namespace: namespace.into(),
            name: name.into(),
            credentials,
            forward: None,
            mqtt_service: None,
            mqtt_forward: None,
            timeout: Duration::from_secs(600),
        }
    }

    /// Publishers reach the MQTT broker the cluster subscribes to through `service`
    /// (port 1883, in the same namespace).
    pub fn with_mqtt_broker(mut self, service: &str) -> KindTarget {
        self.mqtt_service = Some(service.into());
        self
    }

    /// A port-forward to the broker's Service, started once and restarted if it died.
    fn mqtt_endpoint(&mut self) -> Result<Option<String>> {
        let Some(service) = self.mqtt_service.clone() else {
            return Ok(None);
        };
        let alive = match self.mqtt_forward.as_mut() {
            Some(c) => c.try_wait()?.is_none(),
            None => false,
        };
        if !alive {
            let child = Command::new("kubectl")
                .args(["-n", &self.namespace, "port-forward"])
                .arg(format!("svc/{service}"))
                .arg(format!("{LOCAL_MQTT}:1883"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("kubectl port-forward to the MQTT broker")?;
            self.mqtt_forward = Some(child);
            wait_until("the MQTT port-forward", Duration::from_secs(30), || {
                Ok(std::net::TcpStream::connect(("127.0.0.1", LOCAL_MQTT)).is_ok())
            })?;
        }
        Ok(Some(format!("tcp://127.0.0.1:{LOCAL_MQTT}")))
    }

    /// Creates (or updates) the resource with `spec` (YAML, indented by two spaces).
    pub fn apply(&self, spec: &str) -> Result<()> {
        let manifest = format!(
            "apiVersion: strata.dev/v1alpha1\nkind: TimeSeriesCluster\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n{spec}",
            self.name, self.namespace
        );
        let mut child = Command::new("kubectl")
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .context("kubectl apply")?;
        use std::io::Write;
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(manifest.as_bytes())?;
        if !child.wait()?.success() {
            bail!("kubectl apply of {} failed", self.name);
        }
        Ok(())
    }

    /// Deletes the resource and waits until it is gone.
    pub fn delete(&self) -> Result<()> {
        kubectl(&[
            "-n",
            &self.namespace,
            "delete",
            "tsc",
            &self.name,
            "--wait=true",
            "--timeout=300s",
        ])?;
        Ok(())
    }

    fn jsonpath(&self, path: &str) -> Result<String> {
        kubectl(&[
            "-n",
            &self.namespace,
            "get",
            "tsc",
            &self.name,
            "-o",
            &format!("jsonpath={{{path}}}"),
        ])
    }

    fn patch(&self, patch: &str) -> Result<()> {
        kubectl(&[
            "-n",
            &self.namespace,
            "patch",
            "tsc",
            &self.name,
            "--type",
            "merge",
            "-p",
            patch,
        ])?;
        Ok(())
    }

    /// Waits until the operator reports the cluster steady at `replicas` ready nodes for the
    /// current generation.
    pub fn wait_steady(&self, replicas: i32) -> Result<()> {
        wait_until("the cluster to be steady", self.timeout, || {
            let generation = self.jsonpath(".metadata.generation")?;
            let observed = self.jsonpath(".status.observedGeneration")?;
            let ready = self.jsonpath(".status.readyReplicas")?;
            let phase = self.jsonpath(".status.phase")?;
            Ok(generation == observed && ready == replicas.to_string() && phase == "Running")
        })
    }

    /// `<pod> <image of its first container>` per line for the cluster's node pods, selected
    /// by the selector the operator publishes in the status.
    fn pod_images(&self) -> Result<String> {
        let selector = self.jsonpath(".status.selector")?;
        ensure!(
            !selector.trim().is_empty(),
            "the status has no selector yet"
        );
        kubectl(&[
            "-n",
            &self.namespace,
            "get",
            "pods",
            "-l",
            selector.trim(),
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image}{\"\\n\"}{end}",
        ])
    }

    fn stop_forward(&mut self) {
        self.stop_http_forward();
        if let Some(mut c) = self.mqtt_forward.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop_http_forward(&mut self) {
        if let Some(mut c) = self.forward.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for KindTarget {
    fn drop(&mut self) {
        self.stop_forward();
    }
}

impl Target for KindTarget {
    fn endpoints(&mut self) -> Result<Endpoints> {
        // kubectl port-forward pins one pod of the Service; a fresh forward per call spreads
        // the scenarios over the nodes and survives the pod it used being killed.
        self.stop_http_forward();
        let child = Command::new("kubectl")
            .args([
                "-n",
                &self.namespace,
                "port-forward",
                &format!("svc/{}", self.name),
            ])
            .arg(format!("{LOCAL_HTTP}:8181"))
            .arg(format!("{LOCAL_TCP}:5433"))
            .arg(format!("{LOCAL_BINARY}:9876"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("kubectl port-forward")?;
        self.forward = Some(child);
        let ep = Endpoints {
            http: format!("http://127.0.0.1:{LOCAL_HTTP}"),
            tcp_json: format!("127.0.0.1:{LOCAL_TCP}"),
            binary: format!("127.0.0.1:{LOCAL_BINARY}"),
            mqtt: self.mqtt_endpoint()?,
        };
        let health = format!("{}/health", ep.http);
        wait_until("the port-forward", Duration::from_secs(30), || {
            Ok(ureq::get(&health).call().is_ok())
        })?;
        Ok(ep)
    }

    fn credentials(&self) -> (String, String) {
        self.credentials.clone()
    }

    fn kill_pod(&mut self, ordinal: i32) -> Result<()> {
        let pod = format!("{}-{ordinal}", self.name);
        kubectl(&[
            "-n",
            &self.namespace,
            "delete",
            "pod",
            &pod,
            "--grace-period=0",
            "--force",
        ])?;
        let replicas: i32 = self.jsonpath(".spec.replicas")?.trim().parse()?;
        std::thread::sleep(Duration::from_secs(2));
        self.wait_steady(replicas)
    }

    fn roll_image(&mut self, image: &str) -> Result<()> {
        self.patch(&format!("{{\"spec\":{{\"image\":\"{image}\"}}}}"))?;
        let replicas: i32 = self.jsonpath(".spec.replicas")?.trim().parse()?;
        // The status alone is the operator's claim; the pods are the proof. Every pod of the
        // cluster must run the new image, not just the status field say so.
        let mut pods = String::new();
        wait_until("the rollout", self.timeout, || {
            if self.jsonpath(".status.currentImage")? != image {
                return Ok(false);
            }
            pods = self.pod_images()?;
            Ok(rolled_out(&pods, image, replicas))
        })
        .with_context(|| format!("pods and their images:\n{pods}"))?;
        self.wait_steady(replicas)?;
        let pods = self.pod_images()?;
        ensure!(
            rolled_out(&pods, image, replicas),
            "after the rollout, pods and their images:\n{pods}"
        );
        Ok(())
    }

    fn scale(&mut self, replicas: i32) -> Result<()> {
        self.patch(&format!("{{\"spec\":{{\"replicas\":{replicas}}}}}"))?;
        wait_until("the scale", self.timeout, || {
            Ok(self.jsonpath(".status.replicas")? == replicas.to_string())
        })?;
        self.wait_steady(replicas)
    }

    fn uninstall(&mut self) -> Result<()> {
        self.delete()?;
        // The operator's objects carry owner references to the cluster; with foreground
        // deletion done, none of them may remain (PVCs follow the retention policy).
        let selector = format!("app.kubernetes.io/instance={}", self.name);
        let mut leftover = String::new();
        wait_until("the cluster's objects to be deleted", self.timeout, || {
            leftover = kubectl(&[
                "-n",
                &self.namespace,
                "get",
                "statefulsets,services,configmaps,poddisruptionbudgets,pods",
                "-l",
                &selector,
                "-o",
                "name",
            ])?;
            Ok(leftover.trim().is_empty())
        })
        .with_context(|| format!("left behind: {leftover}"))
    }

    fn clustered(&mut self) -> Result<bool> {
        let ep = self.endpoints()?;
        let url = format!("{}/api/v1/cluster/members", ep.http);
        let resp = ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .with_context(|| format!("GET {url}"))?;
        members_status(resp.status().as_u16()).with_context(|| format!("GET {url}"))
    }
}

/// What the answer to `GET /api/v1/cluster/members` says about clustering: 404 is a node
/// without the cluster API; anything else but success is a fault to report, not a reason to
/// skip the multi-node scenarios.
fn members_status(status: u16) -> Result<bool> {
    match status {
        200..=299 => Ok(true),
        404 => Ok(false),
        s => bail!("HTTP {s}"),
    }
}

/// `pods` (as [`KindTarget::pod_images`] lists them) are exactly `replicas` pods, all running
/// `image`.
fn rolled_out(pods: &str, image: &str, replicas: i32) -> bool {
    let images: Vec<&str> = pods
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_once(' ').map_or("", |(_, i)| i.trim()))
        .collect();
    images.len() == replicas as usize && images.iter().all(|i| *i == image)
}

#[cfg(test)]
mod tests {
    use super::{members_status, rolled_out};

    #[test]
    fn only_a_missing_cluster_api_means_unclustered() {
        assert!(members_status(200).unwrap());
        assert!(!members_status(404).unwrap());
        assert!(members_status(401).is_err());
        assert!(members_status(503).is_err());
    }

    #[test]
    fn a_rollout_is_done_when_every_pod_runs_the_image() {
        let done = "strata-0 strata-node:v2\nstrata-1 strata-node:v2\n";
        assert!(rolled_out(done, "strata-node:v2", 2));
        assert!(!rolled_out(done, "strata-node:v2", 3), "a pod is missing");
        let half = "strata-0 strata-node:v1\nstrata-1 strata-node:v2\n";
        assert!(!rolled_out(half, "strata-node:v2", 2));
        assert!(!rolled_out("strata-0 \n", "strata-node:v2", 1));
    }
}
