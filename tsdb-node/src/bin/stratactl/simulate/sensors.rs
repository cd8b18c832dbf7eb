//! Seed 001's simulated sensors: plausible readings per device and metric (a daily cycle, a
//! per-device offset, and a bounded random walk), deterministic for a given seed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// One kind of reading.
struct Kind {
    name: &'static str,
    base: f64,
    /// Half the daily swing.
    daily: f64,
    /// Standard step of the random walk.
    step: f64,
    min: f64,
    max: f64,
    /// Readings are 0 or 1 (e.g. motion), true with this probability.
    binary: Option<f64>,
    decimals: i32,
}

const KINDS: [Kind; 8] = [
    Kind {
        name: "temperature",
        base: 21.5,
        daily: 3.0,
        step: 0.05,
        min: -40.0,
        max: 85.0,
        binary: None,
        decimals: 2,
    },
    Kind {
        name: "humidity",
        base: 45.0,
        daily: 8.0,
        step: 0.2,
        min: 0.0,
        max: 100.0,
        binary: None,
        decimals: 1,
    },
    Kind {
        name: "pressure",
        base: 1013.25,
        daily: 1.5,
        step: 0.05,
        min: 870.0,
        max: 1085.0,
        binary: None,
        decimals: 2,
    },
    Kind {
        name: "co2",
        base: 600.0,
        daily: 150.0,
        step: 4.0,
        min: 400.0,
        max: 5000.0,
        binary: None,
        decimals: 0,
    },
    Kind {
        name: "light",
        base: 300.0,
        daily: 300.0,
        step: 8.0,
        min: 0.0,
        max: 100_000.0,
        binary: None,
        decimals: 0,
    },
    Kind {
        name: "voltage",
        base: 3.7,
        daily: 0.02,
        step: 0.002,
        min: 3.0,
        max: 4.2,
        binary: None,
        decimals: 3,
    },
    Kind {
        name: "vibration",
        base: 0.02,
        daily: 0.01,
        step: 0.004,
        min: 0.0,
        max: 10.0,
        binary: None,
        decimals: 4,
    },
    Kind {
        name: "motion",
        base: 0.0,
        daily: 0.0,
        step: 0.0,
        min: 0.0,
        max: 1.0,
        binary: Some(0.05),
        decimals: 0,
    },
];

/// Most metrics a simulated device reports.
pub const MAX_METRICS: usize = KINDS.len();

const DAY_MS: f64 = 86_400_000.0;

/// Every simulated series' state.
pub struct Sensors {
    rng: SmallRng,
    metrics: usize,
    /// Per series (device-major): the device's offset and the walk's current drift.
    offset: Vec<f64>,
    drift: Vec<f64>,
}

impl Sensors {
    pub fn new(devices: usize, metrics: usize, seed: u64) -> Sensors {
        let metrics = metrics.clamp(1, MAX_METRICS);
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = devices * metrics;
        let offset = (0..n)
            .map(|i| {
                let k = &KINDS[i % metrics];
                (rng.gen::<f64>() - 0.5) * k.daily.max(k.step * 10.0) * 0.6
            })
            .collect();
        Sensors {
            rng,
            metrics,
            offset,
            drift: vec![0.0; n],
        }
    }

    pub fn metric_name(&self, metric: usize) -> &'static str {
        KINDS[metric % self.metrics].name
    }

    /// The next reading of `device`'s `metric` at `t_ms`.
    pub fn read(&mut self, device: usize, metric: usize, t_ms: i64) -> f64 {
        let m = metric % self.metrics;
        let k = &KINDS[m];
        if let Some(p) = k.binary {
            return if self.rng.gen_bool(p) { 1.0 } else { 0.0 };
        }
        let i = device * self.metrics + m;
        let (Some(offset), Some(drift)) = (self.offset.get(i).copied(), self.drift.get_mut(i))
        else {
            return k.base;
        };
        // A walk pulled back towards zero stays near the daily curve instead of wandering off.
        *drift = *drift * 0.98 + (self.rng.gen::<f64>() - 0.5) * 2.0 * k.step;
        // Peak in the afternoon (15:00 UTC), trough at night.
        let phase = ((t_ms as f64 % DAY_MS) / DAY_MS - 0.375) * std::f64::consts::TAU;
        let v = (k.base + offset + k.daily * phase.sin() + *drift).clamp(k.min, k.max);
        let scale = 10f64.powi(k.decimals);
        (v * scale).round() / scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_plausible_and_deterministic() {
        let mut a = Sensors::new(5, MAX_METRICS, 7);
        let mut b = Sensors::new(5, MAX_METRICS, 7);
        for step in 0..1000 {
            let t = 1_700_000_000_000 + step * 60_000;
            for d in 0..5 {
                for (m, k) in KINDS.iter().enumerate() {
                    let v = a.read(d, m, t);
                    assert_eq!(v.to_bits(), b.read(d, m, t).to_bits());
                    assert!(v >= k.min && v <= k.max, "{} {v}", k.name);
                }
            }
        }
        assert_eq!(Sensors::new(1, 99, 0).metrics, MAX_METRICS);
    }
}
