//! The metrics the agent produces: cAdvisor's names, types and help, one [`Series`] per
//! label set, and the Prometheus text exposition of a set of series.

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
    }
}

pub const CPU_USAGE: Family = counter(
    "container_cpu_usage_seconds_total",
    "Cumulative cpu time consumed in seconds.",
);
pub const CPU_USER: Family = counter(
    "container_cpu_user_seconds_total",
    "Cumulative user cpu time consumed in seconds.",
);
pub const CPU_SYSTEM: Family = counter(
    "container_cpu_system_seconds_total",
    "Cumulative system cpu time consumed in seconds.",
);
pub const MEMORY_USAGE: Family = gauge(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including all memory regardless of when it was accessed.",
);
pub const MEMORY_WORKING_SET: Family = gauge(
    "container_memory_working_set_bytes",
    "Current working set in bytes.",
);
pub const MEMORY_RSS: Family = gauge("container_memory_rss", "Size of RSS in bytes.");
pub const NET_RX_BYTES: Family = counter(
    "container_network_receive_bytes_total",
    "Cumulative count of bytes received.",
);
pub const NET_RX_PACKETS: Family = counter(
    "container_network_receive_packets_total",
    "Cumulative count of packets received.",
);
pub const NET_TX_BYTES: Family = counter(
    "container_network_transmit_bytes_total",
    "Cumulative count of bytes transmitted.",
);
pub const NET_TX_PACKETS: Family = counter(
    "container_network_transmit_packets_total",
    "Cumulative count of packets transmitted.",
);
pub const FS_READ_BYTES: Family = counter(
    "container_fs_reads_bytes_total",
    "Cumulative count of bytes read.",
);
pub const FS_WRITE_BYTES: Family = counter(
    "container_fs_writes_bytes_total",
    "Cumulative count of bytes written.",
);
pub const FS_READS: Family = counter(
    "container_fs_reads_total",
    "Cumulative count of reads completed.",
);
pub const FS_WRITES: Family = counter(
    "container_fs_writes_total",
    "Cumulative count of writes completed.",
);

/// Every container family, in exposition order.
pub const CONTAINER_FAMILIES: [Family; 14] = [
    CPU_USAGE,
    CPU_USER,
    CPU_SYSTEM,
    MEMORY_USAGE,
    MEMORY_WORKING_SET,
    MEMORY_RSS,
    NET_RX_BYTES,
    NET_RX_PACKETS,
    NET_TX_BYTES,
    NET_TX_PACKETS,
    FS_READ_BYTES,
    FS_WRITE_BYTES,
    FS_READS,
    FS_WRITES,
];

/// One sample of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub family: Family,
    /// Label names are static (`id`, `namespace`, ...); `__name__` is implied by the family.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// All series of one collection round, at one timestamp.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub timestamp_ms: i64,
    pub series: Vec<Series>,
}

/// Appends the text exposition of `series` for `families` (families without series are
/// left out; series of other families are ignored).
pub fn render(out: &mut String, families: &[Family], series: &[Series]) {
    for family in families {
        let mut members = series
            .iter()
            .filter(|s| s.family.name == family.name)
            .peekable();
        if members.peek().is_none() {
            continue;
        }
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for s in members {
            out.push_str(family.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"");
                    escape_into(out, value);
                    out.push('"');
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", format_value(s.value));
        }
    }
}

fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_escaped_labels() {
        let series = vec![
            Series {
                family: CPU_USAGE,
                labels: vec![("id", "/a".into()), ("pod", "we\"ird\\\n".into())],
                value: 1.5,
            },
            Series {
                family: MEMORY_RSS,
                labels: vec![],
                value: 4096.0,
            },
        ];
        let mut out = String::new();
        render(&mut out, &CONTAINER_FAMILIES, &series);
        assert_eq!(
            out,
            "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n\
             # TYPE container_cpu_usage_seconds_total counter\n\
             container_cpu_usage_seconds_total{id=\"/a\",pod=\"we\\\"ird\\\\\\n\"} 1.5\n\
             # HELP container_memory_rss Size of RSS in bytes.\n\
             # TYPE container_memory_rss gauge\n\
             container_memory_rss 4096\n"
        );
    }
}
