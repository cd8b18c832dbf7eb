//! Turning InfluxDB measurement, field and tag names into valid Prometheus names.
//!
//! InfluxDB accepts almost any name (`cpu.usage`, `host-name`, `temp°C`); Prometheus, and so
//! Grafana's Prometheus data source, accepts only `[a-zA-Z_:][a-zA-Z0-9_:]*` for metrics and
//! `[a-zA-Z_][a-zA-Z0-9_]*` for labels. Every other character becomes `_` (one per character,
//! not per byte), and a name that would start with a digit gets a leading `_`. This is the
//! same rule Telegraf's Prometheus output applies, so dashboards written for it keep working.

/// `cpu.usage-total` → `cpu_usage_total`; `1m_load` → `_1m_load`.
pub fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, |c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `host-name` → `host_name`; `a:b` → `a_b` (colons are not allowed in label names).
pub fn sanitize_label_name(name: &str) -> String {
    sanitize(name, |c| c.is_ascii_alphanumeric() || c == '_')
}

fn sanitize(name: &str, allowed: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| if allowed(c) { c } else { '_' }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        assert_eq!(sanitize_metric_name("cpu_usage"), "cpu_usage");
        assert_eq!(sanitize_metric_name("cpu.usage-total"), "cpu_usage_total");
        assert_eq!(sanitize_metric_name("a:b"), "a:b");
        assert_eq!(sanitize_metric_name("1m"), "_1m");
        assert_eq!(sanitize_metric_name("temp°C"), "temp_C");
        assert_eq!(sanitize_metric_name("with space"), "with_space");
    }

    #[test]
    fn label_names() {
        assert_eq!(sanitize_label_name("host-name"), "host_name");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
        assert_eq!(sanitize_label_name("9z"), "_9z");
        assert_eq!(sanitize_label_name("région"), "r_gion");
    }
}
