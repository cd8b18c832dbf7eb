//! The scenarios, identical for kind and the local twin. Each writes known batches and
//! checks that reading back finds exactly what was acknowledged: nothing lost, nothing twice.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};

use crate::client::{count_samples, generate, simulate_mqtt, wait_until, Batch, PROTOCOLS};
use crate::Target;

/// PromQL window covering every batch the scenarios write (all within the node's default
/// one-hour out-of-order window, oldest first).
const WINDOW: &str = "2h";

/// Tracks what was written so far and checks reads against it.
pub struct Ledger<'a> {
    stratactl: &'a Path,
    written: u64,
    next_seed: u64,
    /// Minutes before now where the next batch starts; each batch takes five minutes.
    next_start_min: u64,
}

impl<'a> Ledger<'a> {
    /// A ledger for a cluster holding no data yet.
    pub fn new(stratactl: &'a Path) -> Ledger<'a> {
        Ledger {
            stratactl,
            written: 0,
            next_seed: 1,
            next_start_min: 58,
        }
    }

    /// Writes one batch over `protocol` through the Service.
    pub fn write(&mut self, target: &mut dyn Target, protocol: &'static str) -> Result<()> {
        ensure!(
            self.next_start_min >= 5,
            "the scenarios wrote more batches than planned"
        );
        let batch = Batch {
            protocol,
            devices: 3,
            metrics: 2,
            points: 30,
            start: format!("now-{}m", self.next_start_min),
            seed: self.next_seed,
        };
        let ep = target.endpoints()?;
        generate(self.stratactl, &ep, &target.credentials(), &batch)?;
        self.written += batch.samples();
        self.next_seed += 1;
        self.next_start_min -= 5;
        Ok(())
    }

    /// Publishes one batch to the MQTT broker the cluster subscribes to. The broker's
    /// acknowledgement is not the node's, so this waits until the cluster has stored every
    /// message, then checks the count stays exact (each message stored once, by one node of
    /// the shared subscription).
    pub fn write_mqtt(&mut self, target: &mut dyn Target) -> Result<()> {
        const MESSAGES: u64 = 60;
        let ep = target.endpoints()?;
        let broker = ep.mqtt.clone().ok_or_else(|| {
            anyhow!("the cluster subscribes to no MQTT broker: the scenarios need spec.mqtt")
        })?;
        let seed = self.next_seed;
        simulate_mqtt(
            self.stratactl,
            &broker,
            &format!("e2e-mqtt-{seed}-"),
            MESSAGES,
            seed,
        )?;
        self.written += MESSAGES;
        self.next_seed += 1;
        let expected = self.written;
        wait_until(
            "the MQTT messages to be stored",
            Duration::from_secs(60),
            || Ok(count_samples(&target.endpoints()?, WINDOW)? >= expected),
        )?;
        self.check(target, "after MQTT ingest")
    }

    /// Reads the count through the Service (each read may hit another node) and compares.
    pub fn check(&self, target: &mut dyn Target, when: &str) -> Result<()> {
        for _ in 0..2 {
            let ep = target.endpoints()?;
            let n = count_samples(&ep, WINDOW)?;
            ensure!(
                n == self.written,
                "{when}: {} holds {n} samples, {} were acknowledged",
                ep.http,
                self.written
            );
        }
        Ok(())
    }
}

/// Ingest over every protocol through the Service, and over MQTT through the broker the
/// cluster subscribes to, then read everything back.
pub fn ingest_every_protocol(target: &mut dyn Target, ledger: &mut Ledger) -> Result<()> {
    for p in PROTOCOLS {
        ledger.write(target, p)?;
    }
    ledger.check(target, "after ingest over every protocol")?;
    ledger.write_mqtt(target)
}

/// Kill a pod without warning; once it is back every acknowledged sample is still there.
pub fn kill_and_restart(target: &mut dyn Target, ledger: &mut Ledger, ordinal: i32) -> Result<()> {
    target.kill_pod(ordinal)?;
    ledger.check(target, "after kill -9 and restart")?;
    ledger.write(target, "http-line")?;
    ledger.check(target, "writing after the restart")
}

/// Roll a new image one pod at a time; data survives and the cluster keeps taking writes.
pub fn roll_image(target: &mut dyn Target, ledger: &mut Ledger, image: &str) -> Result<()> {
    target.roll_image(image)?;
    ledger.check(target, "after the rollout")?;
    ledger.write(target, "remote-write")?;
    ledger.check(target, "writing after the rollout")
}

/// Scale 3 → 5 → 3 with writes in between; no sample is lost on the way down.
pub fn scale_up_and_down(target: &mut dyn Target, ledger: &mut Ledger) -> Result<()> {
    target.scale(5)?;
    ledger.check(target, "after scaling to 5")?;
    ledger.write(target, "tcp-json")?;
    target.scale(3)?;
    ledger.check(target, "after scaling back to 3")?;
    ledger.write(target, "binary")?;
    ledger.check(target, "writing after scaling back to 3")?;
    // The nodes that left also left the broker's shared subscription: what remains must
    // still take every message, once.
    ledger.write_mqtt(target)
}

/// Delete the cluster: every node drains and exits inside its grace period, nothing is left.
pub fn uninstall(target: &mut dyn Target) -> Result<()> {
    target.uninstall()
}
