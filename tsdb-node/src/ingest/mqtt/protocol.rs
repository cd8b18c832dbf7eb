//! `mqtt.protocol`: which MQTT version the subscriber speaks (`auto`, `5` or `3.1.1`), and the
//! version a connection actually uses.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The configured protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MqttProtocol {
    /// MQTT 5 first; 3.1.1 when the broker refuses version 5, remembered from then on.
    #[default]
    Auto,
    V5,
    V311,
}

/// A protocol version spoken on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

impl Version {
    /// The protocol level byte of CONNECT (4 for 3.1.1, 5 for 5), as exported on `/metrics`.
    pub fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V311 => "3.1.1",
            Version::V5 => "5",
        })
    }
}

impl MqttProtocol {
    /// The version tried on the first connection.
    pub fn first(self) -> Version {
        match self {
            MqttProtocol::Auto | MqttProtocol::V5 => Version::V5,
            MqttProtocol::V311 => Version::V311,
        }
    }
}

const EXPECTED: &str = "expected auto, 5 or 3.1.1";

impl FromStr for MqttProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(MqttProtocol::Auto),
            "5" | "5.0" => Ok(MqttProtocol::V5),
            "3.1.1" => Ok(MqttProtocol::V311),
            other => Err(format!("{other:?}: {EXPECTED}")),
        }
    }
}

impl fmt::Display for MqttProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MqttProtocol::Auto => "auto",
            MqttProtocol::V5 => "5",
            MqttProtocol::V311 => "3.1.1",
        })
    }
}

/// Accepts the strings above and the YAML numbers `5` and `5.0` (an unquoted `5` in a file or
/// in `STRATA_MQTT__PROTOCOL` is a number). The message names the key because errors from a
/// parsed YAML value carry no path.
impl<'de> Deserialize<'de> for MqttProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MqttProtocol;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "mqtt.protocol: {EXPECTED}")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<MqttProtocol, E> {
                s.parse()
                    .map_err(|e| E::custom(format!("mqtt.protocol: {e}")))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<MqttProtocol, E> {
                self.visit_str(&n.to_string())
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<MqttProtocol, E> {
                self.visit_str(&n.to_string())
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<MqttProtocol, E> {
                if n == 5.0 {
                    Ok(MqttProtocol::V5)
                } else {
                    self.visit_str(&n.to_string())
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_names_the_key_when_wrong() {
        for (yaml, want) in [
            ("auto", MqttProtocol::Auto),
            ("5", MqttProtocol::V5),
            ("5.0", MqttProtocol::V5),
            ("'5'", MqttProtocol::V5),
            ("3.1.1", MqttProtocol::V311),
            ("'3.1.1'", MqttProtocol::V311),
        ] {
            let got: MqttProtocol = serde_yaml::from_str(yaml).unwrap();
            assert_eq!(got, want, "{yaml}");
            assert_eq!(got.to_string().parse::<MqttProtocol>(), Ok(got));
        }
        for bad in ["4", "3.1", "v5", "true", "[5]", "''"] {
            let e = serde_yaml::from_str::<MqttProtocol>(bad).unwrap_err();
            assert!(e.to_string().contains("mqtt.protocol"), "{bad}: {e}");
        }
        assert_eq!(MqttProtocol::default().first(), Version::V5);
        assert_eq!(MqttProtocol::V311.first(), Version::V311);
        assert_eq!((Version::V311.level(), Version::V5.level()), (4, 5));
    }
}
