//! A node started in-process on ephemeral ports, shared by the integration tests.
// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

pub mod cluster;
pub mod netns;
pub mod process;
pub mod replicas;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use tsdb_node::config::Config;
use tsdb_node::node::{BoundAddrs, Node};

pub struct RunningNode {
    pub addrs: BoundAddrs,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl RunningNode {
    /// Starts a node with its storage under `dir`. `storage` holds extra indented lines of the
    /// `storage:` section; `extra` holds further sections (auth, limits, tls, ...).
    pub fn start(dir: &Path, storage: &str, extra: &str) -> RunningNode {
        let yaml = format!(
            "server:\n  http_addr: 127.0.0.1:0\n  binary_addr: 127.0.0.1:0\n  tcp_addr: 127.0.0.1:0\nstorage:\n  data_dir: {d}/data\n  wal_dir: {d}/wal\n{storage}retention:\n  raw: 0\n{extra}",
            d = dir.display()
        );
        let cfg = Config::from_yaml(&yaml, "test", Vec::new()).unwrap();
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(Node::new(cfg, "/".into()).run(
                async move {
                    let _ = stop_rx.await;
                },
                move |a| {
                    let _ = tx.send(a);
                },
            ))
        });
        let addrs = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("node did not start");
        RunningNode {
            addrs,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `auth:` section with one user `sensor` / `s3cret` (bcrypt cost 4 to keep tests fast).
    pub fn sensor_user() -> String {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        format!("auth:\n  users:\n    - username: sensor\n      password_hash: \"{hash}\"\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addrs.http, path)
    }

    /// Stops the node and waits for its orderly shutdown.
    pub fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap().unwrap();
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
