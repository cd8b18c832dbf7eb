//! The data model every storage module shares: samples, series ids, label sets and matchers.
//!
//! A series is identified by its label set; the metric name is the label `__name__`, as in
//! Prometheus, so that one matcher type selects on name and labels alike.

use std::fmt;
use std::sync::Arc;

use regex::Regex;

/// Stable identifier of a series inside one node. Assigned by the catalog, never reused.
pub type SeriesId = u64;

/// Label that carries the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// One observation: milliseconds since the Unix epoch and a value (NaN is a valid value).
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl Sample {
    pub fn new(t: i64, v: f64) -> Self {
        Sample { t, v }
    }
}

/// Bitwise equality, so that NaN == NaN and -0.0 != 0.0: storage must give back exactly the
/// bits it was given.
impl PartialEq for Sample {
    fn eq(&self, other: &Self) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}
impl Eq for Sample {}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set, always sorted by name with unique names and no empty values
/// (an empty value means "label absent", as in Prometheus).
///
/// Shared, not copied, when cloned: ingest keeps the label sets of recent series and hands a
/// clone to every sample of them, and a batch's label sets travel to the live stream and the
/// cluster's write path; a clone is a reference count, not an allocation per label.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Arc<[Label]>);

impl Labels {
    /// Builds a label set: sorts by name, drops empty values, and keeps the last value given
    /// for a repeated name.
    pub fn new(mut labels: Vec<Label>) -> Self {
        labels.retain(|l| !l.value.is_empty());
        // Stable sort keeps input order among equal names, so "last given wins" below.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut kept = 0;
        for i in 0..labels.len() {
            if kept > 0 && labels[kept - 1].name == labels[i].name {
                labels.swap(kept - 1, i);
            } else {
                labels.swap(kept, i);
                kept += 1;
            }
        }
        labels.truncate(kept);
        Labels(labels.into())
    }

    /// Convenience: a metric name plus `(name, value)` pairs.
    pub fn from_metric(metric: &str, pairs: &[(&str, &str)]) -> Self {
        let mut v = Vec::with_capacity(pairs.len() + 1);
        v.push(Label::new(METRIC_NAME_LABEL, metric));
        v.extend(pairs.iter().map(|(n, val)| Label::new(*n, *val)));
        Labels::new(v)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// The address of the shared allocation: equal for clones of one label set, distinct for
    /// non-empty label sets alive at once. The engine remembers series ids by it.
    pub(crate) fn allocation(&self) -> usize {
        Arc::as_ptr(&self.0).cast::<Label>() as usize
    }

    /// The canonical series key used for hashing and persistence:
    /// for each label in name order, `name 0xFF value 0xFF`. 0xFF never occurs in UTF-8.
    pub fn series_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(
            self.0
                .iter()
                .map(|l| l.name.len() + l.value.len() + 2)
                .sum(),
        );
        for l in self.0.iter() {
            key.extend_from_slice(l.name.as_bytes());
            key.push(0xFF);
            key.extend_from_slice(l.value.as_bytes());
            key.push(0xFF);
        }
        key
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name().unwrap_or("");
        write!(f, "{name}{{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME_LABEL) {
            if !first {
                write!(f, ",")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        write!(f, "}}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

/// A label matcher as in PromQL. Regexes are anchored (`^(?:re)$`). A missing label matches
/// as the empty string, so `{foo=""}` selects series without `foo`.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} in matcher: {source}")]
pub struct InvalidMatcher {
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

impl Matcher {
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, InvalidMatcher> {
        let value = value.into();
        let regex = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|source| InvalidMatcher {
                    pattern: value.clone(),
                    source,
                })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            regex,
        })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            regex: None,
        }
    }

    /// Whether a label value (empty when the label is absent) satisfies this matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::RegexMatch => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::RegexNoMatch => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// Whether the empty string matches, i.e. whether series lacking the label are selected.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_deduplicated_and_drop_empty_values() {
        let l = Labels::new(vec![
            Label::new("b", "2"),
            Label::new("a", "1"),
            Label::new("b", "3"),
            Label::new("c", ""),
        ]);
        assert_eq!(l.as_slice(), &[Label::new("a", "1"), Label::new("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn regex_matchers_are_anchored_and_absent_label_is_empty() {
        let m = Matcher::new(MatchOp::RegexMatch, "room", "r.*1").unwrap();
        assert!(m.matches("room-1"));
        assert!(!m.matches("xroom-1x"));
        let l = Labels::from_metric("t", &[("x", "1")]);
        assert!(Matcher::equal("room", "").matches_labels(&l));
        assert!(!Matcher::new(MatchOp::RegexMatch, "room", ".+")
            .unwrap()
            .matches_labels(&l));
    }

    #[test]
    fn bad_regex_is_an_error_not_a_panic() {
        assert!(Matcher::new(MatchOp::RegexMatch, "a", "(").is_err());
    }

    #[test]
    fn samples_compare_bitwise() {
        assert_eq!(Sample::new(1, f64::NAN), Sample::new(1, f64::NAN));
        assert_ne!(Sample::new(1, 0.0), Sample::new(1, -0.0));
    }
}
