//! Series selection by label matchers, and label name/value listing.
//!
//! Selection follows Prometheus' `PostingsForMatchers`: a missing label reads as the empty
//! string. A matcher that rejects the empty string can only select series that carry the
//! label, so it contributes the union of the postings of its accepted values, and those sets
//! are intersected. A matcher that accepts the empty string also selects every series lacking
//! the label, so it is applied by subtracting the postings of its *rejected* values instead.
//! If no matcher of the first kind exists, subtraction starts from all series.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::storage::model::{MatchOp, Matcher, SeriesId};

use super::hash::BuildIdHasher;
use super::postings::{intersect_all, subtract, union_disjoint, PostingList};
use super::symbols::Sym;
use super::Catalog;

/// Characters with a meaning in regex syntax besides `|`. A pattern without them is a plain
/// alternation of literals (`a|b|c`, typical of dashboard multi-value variables), which is
/// answered by direct lookups instead of running the regex over every value of the label.
const REGEX_META: &[u8] = b"\\.+*?()[]{}^$";

/// The set of non-empty values of one label a matcher accepts (or, after
/// [`ValueSet::complement`], rejects).
enum ValueSet<'m> {
    All,
    Nothing,
    /// Exactly these values (non-empty, sorted, unique).
    Only(Vec<&'m str>),
    /// Every value except these.
    AllBut(Vec<&'m str>),
    /// Values that do (`accept`) or do not start with this prefix.
    Prefix {
        prefix: &'m str,
        accept: bool,
    },
    /// Values `v` with `matcher.matches(v) == accept`.
    Matching {
        matcher: &'m Matcher,
        accept: bool,
    },
}

impl<'m> ValueSet<'m> {
    /// The non-empty values `m` accepts.
    fn accepted_by(m: &'m Matcher) -> Self {
        let value = m.value.as_str();
        match m.op {
            MatchOp::Equal if value.is_empty() => ValueSet::Nothing,
            MatchOp::Equal => ValueSet::Only(vec![value]),
            MatchOp::NotEqual if value.is_empty() => ValueSet::All,
            MatchOp::NotEqual => ValueSet::AllBut(vec![value]),
            // Matchers compile as `^(?s:…)$`, so `.` also matches newlines and these two are
            // exact: `.*` accepts everything, `.+` every non-empty value.
            MatchOp::RegexMatch if value == ".*" || value == ".+" => ValueSet::All,
            MatchOp::RegexNoMatch if value == ".*" || value == ".+" => ValueSet::Nothing,
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                let positive = m.op == MatchOp::RegexMatch;
                if let Some(literals) = literal_alternatives(value) {
                    if positive {
                        ValueSet::Only(literals)
                    } else {
                        ValueSet::AllBut(literals)
                    }
                } else if let Some(prefix) = literal_prefix(value) {
                    ValueSet::Prefix {
                        prefix,
                        accept: positive,
                    }
                } else {
                    // `matches` already applies the matcher's negation.
                    ValueSet::Matching {
                        matcher: m,
                        accept: true,
                    }
                }
            }
        }
    }

    /// The other non-empty values.
    fn complement(self) -> Self {
        match self {
            ValueSet::All => ValueSet::Nothing,
            ValueSet::Nothing => ValueSet::All,
            ValueSet::Only(v) => ValueSet::AllBut(v),
            ValueSet::AllBut(v) => ValueSet::Only(v),
            ValueSet::Prefix { prefix, accept } => ValueSet::Prefix {
                prefix,
                accept: !accept,
            },
            ValueSet::Matching { matcher, accept } => ValueSet::Matching {
                matcher,
                accept: !accept,
            },
        }
    }
}

/// The non-empty alternatives of `pattern` if it is a plain alternation of literals.
pub(super) fn literal_alternatives(pattern: &str) -> Option<Vec<&str>> {
    if pattern.bytes().any(|b| REGEX_META.contains(&b)) {
        return None;
    }
    let mut literals: Vec<&str> = pattern.split('|').filter(|s| !s.is_empty()).collect();
    literals.sort_unstable();
    literals.dedup();
    Some(literals)
}

/// `p` if `pattern` is `p.*` with `p` a plain literal (`dev-0012.*`): the anchored regex then
/// accepts exactly the strings starting with `p`, which a byte comparison checks far faster
/// than the regex engine when scanning a million device ids.
pub(super) fn literal_prefix(pattern: &str) -> Option<&str> {
    let prefix = pattern.strip_suffix(".*")?;
    if prefix.bytes().any(|b| b == b'|' || REGEX_META.contains(&b)) {
        return None;
    }
    Some(prefix)
}

impl Catalog {
    /// Ids (ascending) of the series that satisfy every matcher, where an absent label reads as
    /// the empty string. An empty matcher list, or one where every matcher accepts the empty
    /// string, is answered from the set of all series; rejecting such selectors (PromQL's
    /// "at least one non-empty matcher" rule) is up to the query layer.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        let mut include: Vec<Cow<'_, [SeriesId]>> = Vec::new();
        let mut exclude: Vec<Cow<'_, [SeriesId]>> = Vec::new();
        for m in matchers {
            let accepted = ValueSet::accepted_by(m);
            if m.matches_empty() {
                let rejected = self.postings_for(&m.name, &accepted.complement());
                if !rejected.is_empty() {
                    exclude.push(rejected);
                }
            } else {
                let selected = self.postings_for(&m.name, &accepted);
                if selected.is_empty() {
                    return Vec::new();
                }
                include.push(selected);
            }
        }
        let mut result = if include.is_empty() {
            self.all_ids()
        } else {
            intersect_all(include.iter().map(|set| &**set).collect())
        };
        for set in &exclude {
            if result.is_empty() {
                break;
            }
            subtract(&mut result, set);
        }
        result
    }

    /// Sorted, unique names of the labels carried by the series `ids` (unknown ids are
    /// ignored), or by any series when `ids` is `None`.
    pub fn label_names(&self, ids: Option<&[SeriesId]>) -> Vec<String> {
        let syms: Vec<Sym> = match ids {
            None => self.postings.names().collect(),
            Some(ids) => {
                let mut seen: HashSet<Sym, BuildIdHasher> = HashSet::default();
                for id in ids {
                    if let Some(entry) = self.entry(*id) {
                        seen.extend(
                            entry
                                .syms
                                .chunks_exact(2)
                                .filter_map(|p| p.first().copied()),
                        );
                    }
                }
                seen.into_iter().collect()
            }
        };
        self.sorted_strings(syms)
    }

    /// Sorted, unique values of label `name` among the series `ids` (unknown ids are
    /// ignored), or among all series when `ids` is `None`. Series lacking the label contribute
    /// nothing; the empty string is never a value.
    pub fn label_values(&self, name: &str, ids: Option<&[SeriesId]>) -> Vec<String> {
        let Some(name_sym) = self.symbols.lookup(name) else {
            return Vec::new();
        };
        let Some(values) = self.postings.values(name_sym) else {
            return Vec::new();
        };
        let syms: Vec<Sym> = match ids {
            None => values.keys().copied().collect(),
            Some(ids) => {
                let mut seen: HashSet<Sym, BuildIdHasher> = HashSet::default();
                for id in ids {
                    let Some(entry) = self.entry(*id) else {
                        continue;
                    };
                    let value = entry.syms.chunks_exact(2).find_map(|pair| match *pair {
                        [n, v] if n == name_sym => Some(v),
                        _ => None,
                    });
                    seen.extend(value);
                }
                seen.into_iter().collect()
            }
        };
        self.sorted_strings(syms)
    }

    /// Ids of all series, ascending.
    fn all_ids(&self) -> Vec<SeriesId> {
        let mut ids: Vec<SeriesId> = self.hash_of.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn sorted_strings(&self, syms: Vec<Sym>) -> Vec<String> {
        let mut out: Vec<String> = syms
            .into_iter()
            .map(|sym| self.symbols.resolve(sym).to_owned())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Series that carry label `name` with a value in `set`.
    fn postings_for(&self, name: &str, set: &ValueSet<'_>) -> Cow<'_, [SeriesId]> {
        let Some(values) = self
            .symbols
            .lookup(name)
            .and_then(|sym| self.postings.values(sym))
        else {
            return Cow::Borrowed(&[]);
        };
        let lists: Vec<&[SeriesId]> = match set {
            ValueSet::Nothing => Vec::new(),
            ValueSet::All => values.values().map(PostingList::as_slice).collect(),
            ValueSet::Only(literals) => literals
                .iter()
                .filter_map(|v| self.symbols.lookup(v))
                .filter_map(|sym| values.get(&sym))
                .map(PostingList::as_slice)
                .collect(),
            ValueSet::AllBut(literals) => {
                let mut excluded: Vec<Sym> = literals
                    .iter()
                    .filter_map(|v| self.symbols.lookup(v))
                    .collect();
                excluded.sort_unstable();
                values
                    .iter()
                    .filter(|(sym, _)| excluded.binary_search(sym).is_err())
                    .map(|(_, list)| list.as_slice())
                    .collect()
            }
            ValueSet::Prefix { prefix, accept } => values
                .iter()
                .filter(|(&sym, _)| self.symbols.resolve(sym).starts_with(prefix) == *accept)
                .map(|(_, list)| list.as_slice())
                .collect(),
            ValueSet::Matching { matcher, accept } => values
                .iter()
                .filter(|(&sym, _)| matcher.matches(self.symbols.resolve(sym)) == *accept)
                .map(|(_, list)| list.as_slice())
                .collect(),
        };
        match lists.as_slice() {
            [] => Cow::Borrowed(&[]),
            [only] => Cow::Borrowed(*only),
            _ => Cow::Owned(union_disjoint(lists.into_iter())),
        }
    }
}
