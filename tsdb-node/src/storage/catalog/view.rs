//! Borrowed view of a stored series' labels.
//!
//! The catalog keeps label sets as interned symbols, not as [`Labels`], so it hands out this
//! view for zero-copy access and materializes a [`Labels`] only on request.

use std::fmt;

use crate::storage::model::{Label, Labels, METRIC_NAME_LABEL};

use super::symbols::{Sym, Symbols};

/// The labels of one series in the catalog, sorted by name like [`Labels`].
#[derive(Clone, Copy)]
pub struct SeriesLabels<'a> {
    symbols: &'a Symbols,
    /// Flattened `[name, value, name, value, ...]`.
    syms: &'a [Sym],
}

impl<'a> SeriesLabels<'a> {
    pub(crate) fn new(symbols: &'a Symbols, syms: &'a [Sym]) -> Self {
        SeriesLabels { symbols, syms }
    }

    /// `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'a {
        let symbols = self.symbols;
        self.syms.chunks_exact(2).map(move |pair| match *pair {
            [name, value] => (symbols.resolve(name), symbols.resolve(value)),
            // chunks_exact(2) only yields pairs.
            _ => ("", ""),
        })
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&'a str> {
        self.get(METRIC_NAME_LABEL)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.syms.len() / 2
    }

    /// Whether the series has no labels at all.
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// An owned copy.
    pub fn to_labels(&self) -> Labels {
        // Already sorted and unique; Labels::new re-checks, which is cheap at this size.
        Labels::new(self.iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    /// Whether these are exactly the labels of `other`.
    pub fn eq_labels(&self, other: &Labels) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((n, v), l)| n == l.name && v == l.value)
    }
}

impl PartialEq<Labels> for SeriesLabels<'_> {
    fn eq(&self, other: &Labels) -> bool {
        self.eq_labels(other)
    }
}

impl fmt::Debug for SeriesLabels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Same rendering as [`Labels`]' `Display`: `metric{name="value",...}`.
impl fmt::Display for SeriesLabels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.metric_name().unwrap_or(""))?;
        let mut first = true;
        for (name, value) in self.iter().filter(|(n, _)| *n != METRIC_NAME_LABEL) {
            if !first {
                write!(f, ",")?;
            }
            first = false;
            write!(f, "{name}={value:?}")?;
        }
        write!(f, "}}")
    }
}
