//! Broker URLs: `tcp://host[:1883]`, `mqtt://…`, `ssl://host[:8883]`, `mqtts://…`.

use std::fmt;

/// A parsed broker address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses a broker URL. Credentials belong in `mqtt.username`/`mqtt.password`, not in
    /// the URL, so that the URL can be logged.
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?}: expected tcp://host:port or ssl://host:port"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "tcp" | "mqtt" => false,
            "ssl" | "tls" | "mqtts" => true,
            other => {
                return Err(format!(
                    "unsupported scheme {other:?} (tcp, mqtt, ssl, mqtts)"
                ))
            }
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('@') {
            return Err("put credentials in mqtt.username and mqtt.password, not the URL".into());
        }
        if authority.contains(['/', '?', '#']) {
            return Err(format!("{url:?}: a broker URL has no path or query"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
            None if tls => 8883,
            None => 1883,
        };
        Ok(BrokerUrl {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "ssl" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn schemes_ports_and_errors() {
        let u = BrokerUrl::parse("tcp://localhost:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("localhost", 1884, false));
        assert_eq!(BrokerUrl::parse("mqtt://b").unwrap().port, 1883);
        let s = BrokerUrl::parse("ssl://broker.example/").unwrap();
        assert_eq!((s.port, s.tls), (8883, true));
        let v6 = BrokerUrl::parse("mqtts://[::1]:9000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));
        assert_eq!(v6.to_string(), "ssl://[::1]:9000");
        for bad in [
            "localhost:1883",
            "http://x",
            "tcp://",
            "tcp://:1883",
            "tcp://h:0",
            "tcp://h:99999",
            "tcp://user:pw@h",
            "tcp://h/path",
            "tcp://[::1",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_parses_back(host in "[a-z][a-z0-9.-]{0,20}", port in 1u16.., tls in any::<bool>()) {
            let u = BrokerUrl { host, port, tls };
            prop_assert_eq!(BrokerUrl::parse(&u.to_string()).unwrap(), u);
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = BrokerUrl::parse(&s);
        }
    }
}
