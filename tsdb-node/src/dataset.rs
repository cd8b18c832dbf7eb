//! The reference IoT dataset the storage benchmarks are judged on.
//!
//! Per device, four series sampled every `interval_ms`: a temperature random walk with one
//! decimal kept within 18–26 °C, a relative-humidity random walk with one decimal within
//! 30–70 %, an energy counter (kWh, one decimal) that only grows, and a 0/1 motion state that
//! flips rarely. Deterministic for a given seed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::storage::model::{Labels, Sample};

pub const METRICS: [&str; 4] = ["temperature", "humidity", "energy_kwh_total", "motion"];

#[derive(Clone, Debug)]
pub struct IotDataset {
    pub devices: usize,
    pub interval_ms: i64,
    pub steps: usize,
    pub start_ms: i64,
    pub seed: u64,
}

impl IotDataset {
    /// 1000 devices × 4 series, 10 s interval, one day: 34.56 M samples.
    pub fn reference() -> Self {
        IotDataset {
            devices: 1000,
            interval_ms: 10_000,
            steps: 8640,
            // 2026-01-01T00:00:00Z
            start_ms: 1_767_225_600_000,
            seed: 42,
        }
    }

    pub fn series_count(&self) -> usize {
        self.devices * METRICS.len()
    }

    pub fn sample_count(&self) -> usize {
        self.series_count() * self.steps
    }

    /// Label sets in series order (device-major, then metric).
    pub fn labels(&self) -> Vec<Labels> {
        let mut out = Vec::with_capacity(self.series_count());
        for d in 0..self.devices {
            let device = format!("dev-{d:05}");
            let site = format!("site-{:02}", d % 50);
            for m in METRICS {
                out.push(Labels::from_metric(
                    m,
                    &[("device_id", &device), ("site", &site)],
                ));
            }
        }
        out
    }

    /// A generator of one time step after another; each step yields one sample per series.
    pub fn generator(&self) -> IotGenerator {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let state = (0..self.devices)
            .map(|_| DeviceState {
                temp_decis: rng.gen_range(180..=260),
                hum_decis: rng.gen_range(300..=700),
                energy_decis: rng.gen_range(0..100_000),
                motion: rng.gen_bool(0.1),
            })
            .collect();
        IotGenerator {
            rng,
            state,
            step: 0,
            ds: self.clone(),
        }
    }
}

struct DeviceState {
    temp_decis: i64,
    hum_decis: i64,
    energy_decis: i64,
    motion: bool,
}

pub struct IotGenerator {
    rng: SmallRng,
    state: Vec<DeviceState>,
    step: usize,
    ds: IotDataset,
}

impl IotGenerator {
    /// Fills `out` with the next step's samples, `out[i]` for series `i`; false when done.
    pub fn next_step(&mut self, out: &mut Vec<Sample>) -> bool {
        if self.step >= self.ds.steps {
            return false;
        }
        out.clear();
        let t = self.ds.start_ms + self.step as i64 * self.ds.interval_ms;
        for d in &mut self.state {
            d.temp_decis = (d.temp_decis + self.rng.gen_range(-1..=1)).clamp(180, 260);
            d.hum_decis = (d.hum_decis + self.rng.gen_range(-1..=1)).clamp(300, 700);
            d.energy_decis += self.rng.gen_range(0..=3);
            if self.rng.gen_bool(0.001) {
                d.motion = !d.motion;
            }
            out.push(Sample::new(t, d.temp_decis as f64 / 10.0));
            out.push(Sample::new(t, d.hum_decis as f64 / 10.0));
            out.push(Sample::new(t, d.energy_decis as f64 / 10.0));
            out.push(Sample::new(t, if d.motion { 1.0 } else { 0.0 }));
        }
        self.step += 1;
        true
    }
}
