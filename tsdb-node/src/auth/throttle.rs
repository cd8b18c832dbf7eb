//! Per-address throttling of failed logins, so that password guessing over many connections
//! is slowed to a crawl.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// When the throttle locks an address out, and how much memory it may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleOptions {
    /// Failures within `window` that trigger a lockout.
    pub max_failures: u32,
    /// The span failures are counted over, from the first one.
    pub window: Duration,
    /// How long a locked-out address is refused.
    pub lockout: Duration,
    /// Addresses tracked at once. Bounds memory under an attack from many addresses; when
    /// full, expired entries are dropped, and if none expired a new address is not tracked.
    pub max_tracked: usize,
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        ThrottleOptions {
            max_failures: 5,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            max_tracked: 100_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Start of the current counting window.
    since: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

/// Counts authentication failures per client address and refuses an address for
/// `lockout` after `max_failures` failures within `window`. Thread-safe.
#[derive(Debug)]
pub struct FailureThrottle {
    opts: ThrottleOptions,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl Default for FailureThrottle {
    fn default() -> Self {
        Self::new(ThrottleOptions::default())
    }
}

impl FailureThrottle {
    /// A throttle with the given policy.
    pub fn new(opts: ThrottleOptions) -> Self {
        FailureThrottle {
            opts,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while `ip` is locked out; checked before spending a bcrypt
    /// computation on the attempt.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.entries.lock().get(&ip).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt; returns `Err(lockout)` if this failure locked the address.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut entries = self.entries.lock();
        if !entries.contains_key(&ip) && entries.len() >= self.opts.max_tracked {
            let (window, lockout) = (self.opts.window, self.opts.lockout);
            entries.retain(|_, e| !is_expired(e, now, window, lockout));
            if entries.len() >= self.opts.max_tracked {
                tracing::warn!(
                    tracked = entries.len(),
                    "login failure throttle is full; not tracking another address"
                );
                return Ok(());
            }
        }
        let e = entries.entry(ip).or_insert(Entry {
            since: now,
            failures: 0,
            locked_until: None,
        });
        if now.saturating_duration_since(e.since) > self.opts.window
            || e.locked_until.is_some_and(|u| u <= now)
        {
            *e = Entry {
                since: now,
                failures: 0,
                locked_until: None,
            };
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= self.opts.max_failures {
            e.locked_until = Some(now + self.opts.lockout);
            tracing::warn!(%ip, failures = e.failures, "too many failed logins; address locked out");
            return Err(self.opts.lockout);
        }
        Ok(())
    }

    /// Forgets an address's failures after a successful login.
    pub fn record_success(&self, ip: IpAddr) {
        self.entries.lock().remove(&ip);
    }
}

fn is_expired(e: &Entry, now: Instant, window: Duration, lockout: Duration) -> bool {
    match e.locked_until {
        Some(until) => until <= now,
        None => now.saturating_duration_since(e.since) > window.max(lockout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(max_tracked: usize) -> ThrottleOptions {
        ThrottleOptions {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(120),
            max_tracked,
        }
    }

    #[test]
    fn locks_out_after_max_failures_in_window() {
        let t = FailureThrottle::new(opts(10));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(t.record_failure(ip, t0).is_ok());
        assert!(t.record_failure(ip, t0).is_ok());
        assert!(t.check(ip, t0).is_ok());
        assert_eq!(t.record_failure(ip, t0), Err(Duration::from_secs(120)));
        assert!(t.check(ip, t0 + Duration::from_secs(119)).is_err());
        assert!(t.check(other, t0).is_ok());
        assert!(t.check(ip, t0 + Duration::from_secs(120)).is_ok());
        // After the lockout the count starts over.
        assert!(t.record_failure(ip, t0 + Duration::from_secs(121)).is_ok());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t = FailureThrottle::new(opts(10));
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..10 {
            let now = t0 + Duration::from_secs(61 * i);
            assert!(t.record_failure(ip, now).is_ok());
        }
    }

    #[test]
    fn success_clears_failures() {
        let t = FailureThrottle::new(opts(10));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        t.record_failure(ip, t0).unwrap();
        t.record_failure(ip, t0).unwrap();
        t.record_success(ip);
        assert!(t.record_failure(ip, t0).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let t = FailureThrottle::new(opts(2));
        let t0 = Instant::now();
        for i in 0..100u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            let _ = t.record_failure(ip, t0);
        }
        assert!(t.entries.lock().len() <= 2);
        // Expired entries make room again.
        let later = t0 + Duration::from_secs(1000);
        let _ = t.record_failure(IpAddr::from([10, 1, 0, 0]), later);
        assert!(t.entries.lock().contains_key(&IpAddr::from([10, 1, 0, 0])));
    }
}
