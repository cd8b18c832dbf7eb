//! A real mosquitto broker standing in for the MQTT broker a cluster subscribes to, for the
//! local twin (on kind, `run.sh` deploys mosquitto in the namespace instead).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::client::wait_until;

/// A mosquitto process listening on one loopback address; killed on drop.
pub struct Mosquitto {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn mosquitto_binary() -> &'static str {
    // Debian installs the broker in /usr/sbin, which is not on every user's PATH.
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

impl Mosquitto {
    /// Starts mosquitto on `ip:1883`, anonymous access allowed, and waits until it accepts
    /// connections.
    pub fn start(ip: Ipv4Addr) -> Result<Mosquitto> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener 1883 {ip}\nallow_anonymous true\npersistence false\n"),
        )?;
        let log = std::fs::File::create(dir.path().join("mosquitto.log"))?;
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context(
                "starting mosquitto (apt-get install -y mosquitto mosquitto-clients; \
                 .ci/run installs it)",
            )?;
        let mut broker = Mosquitto {
            child,
            addr: SocketAddr::from((ip, 1883)),
            _dir: dir,
        };
        let addr = broker.addr;
        let child = &mut broker.child;
        wait_until("mosquitto to listen", Duration::from_secs(10), || {
            // Exited means the address was taken (or the configuration refused): do not
            // mistake another process's listener for this broker.
            if let Some(status) = child.try_wait()? {
                bail!("mosquitto exited at start ({status}); is {addr} already in use?");
            }
            Ok(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
        })?;
        Ok(broker)
    }

    /// The broker's URL, as nodes and publishers write it.
    pub fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
