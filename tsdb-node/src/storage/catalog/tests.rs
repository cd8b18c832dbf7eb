//! Catalog tests: unit tests per behaviour, and property tests comparing selection and
//! listings against brute force over a model of the series set.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;
use crate::storage::model::{Label, MatchOp, Matcher};

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

/// Checks every internal cross-reference of the catalog.
fn check_invariants(c: &Catalog) {
    assert_eq!(c.series.len(), c.hash_of.len());
    let mut sym_uses: HashMap<Sym, u32> = HashMap::new();
    let mut pairs = 0usize;
    for entry in &c.series {
        let id = entry.id;
        assert_eq!(c.hash_of.get(&id), Some(&entry.hash));
        assert!(
            id >= FIRST_ID && id < c.next_id,
            "id {id} next {}",
            c.next_id
        );
        assert_eq!(entry.syms.len() % 2, 0);
        let labels = c.labels(id).unwrap();
        assert_eq!(
            labels.len() * 2,
            entry.syms.len(),
            "stored labels are unique and non-empty"
        );
        assert_eq!(c.id_of(&labels), Some(id));
        for &sym in entry.syms.iter() {
            *sym_uses.entry(sym).or_default() += 1;
        }
        for pair in entry.syms.chunks_exact(2) {
            pairs += 1;
            let list = c.postings.get(pair[0], pair[1]).expect("pair has postings");
            assert!(list.binary_search(&id).is_ok());
        }
    }
    let mut posted = 0usize;
    for name in c.postings.names() {
        let values = c.postings.values(name).unwrap();
        assert!(!values.is_empty());
        for (&value, list) in values {
            let list = list.as_slice();
            assert!(!list.is_empty());
            assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
            for id in list {
                let entry = c.entry(*id).expect("posted series exists");
                assert!(entry.syms.chunks_exact(2).any(|p| p == [name, value]));
            }
            posted += list.len();
        }
    }
    assert_eq!(pairs, posted);
    let live: BTreeSet<Sym> = c.symbols.live().into_iter().collect();
    assert_eq!(live, sym_uses.keys().copied().collect::<BTreeSet<_>>());
    for (sym, uses) in sym_uses {
        assert_eq!(
            c.symbols.ref_count(sym),
            uses,
            "refcount of {:?}",
            c.symbols.resolve(sym)
        );
    }
}

fn sample_catalog() -> (Catalog, Vec<SeriesId>) {
    let mut c = Catalog::new(SeriesLimits::default());
    let series = [
        l(&[("__name__", "temp"), ("site", "s1"), ("unit", "C")]),
        l(&[("__name__", "temp"), ("site", "s2"), ("unit", "F")]),
        l(&[("__name__", "temp"), ("site", "s3")]),
        l(&[("__name__", "hum"), ("site", "s1")]),
        l(&[("__name__", "hum"), ("site", "s2"), ("unit", "%")]),
    ];
    let ids = series
        .iter()
        .map(|s| c.get_or_create(s).unwrap().0)
        .collect();
    (c, ids)
}

#[test]
fn ids_are_assigned_from_one_and_never_reused() {
    let (mut c, ids) = sample_catalog();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    assert_eq!(c.next_id(), 6);
    let temp_s1 = l(&[("__name__", "temp"), ("site", "s1"), ("unit", "C")]);
    assert_eq!(c.get_or_create(&temp_s1), Ok((1, false)));
    assert!(c.remove(1));
    assert!(!c.remove(1));
    assert!(!c.contains(1));
    assert_eq!(c.id_of(&temp_s1), None);
    assert_eq!(c.get_or_create(&temp_s1), Ok((6, true)));
    assert_eq!(c.len(), 5);
    check_invariants(&c);
}

#[test]
fn labels_round_trip() {
    let (c, _) = sample_catalog();
    let want = l(&[("__name__", "temp"), ("site", "s2"), ("unit", "F")]);
    assert_eq!(c.labels(2), Some(want.clone()));
    let view = c.series_labels(2).unwrap();
    assert_eq!(view, want);
    assert_eq!(view.get("site"), Some("s2"));
    assert_eq!(view.get("nope"), None);
    assert_eq!(view.metric_name(), Some("temp"));
    assert_eq!(view.len(), 3);
    assert_eq!(view.to_string(), want.to_string());
    assert_eq!(c.labels(99), None);
    let mut all: Vec<(SeriesId, Labels)> = c.iter().map(|(id, v)| (id, v.to_labels())).collect();
    all.sort();
    assert_eq!(all.len(), 5);
    assert_eq!(all[1], (2, want));
}

#[test]
fn equal_matchers() {
    let (c, _) = sample_catalog();
    assert_eq!(
        c.select(&[Matcher::equal("__name__", "temp")]),
        vec![1, 2, 3]
    );
    assert_eq!(
        c.select(&[
            Matcher::equal("__name__", "temp"),
            Matcher::equal("site", "s2")
        ]),
        vec![2]
    );
    assert_eq!(
        c.select(&[Matcher::equal("site", "nope")]),
        Vec::<SeriesId>::new()
    );
    assert_eq!(
        c.select(&[Matcher::equal("nolabel", "x")]),
        Vec::<SeriesId>::new()
    );
}

#[test]
fn empty_equal_selects_series_without_the_label() {
    let (c, _) = sample_catalog();
    assert_eq!(c.select(&[Matcher::equal("unit", "")]), vec![3, 4]);
    assert_eq!(
        c.select(&[
            Matcher::equal("__name__", "temp"),
            Matcher::equal("unit", "")
        ]),
        vec![3]
    );
    // A label no series has: `=""` matches everything.
    assert_eq!(
        c.select(&[Matcher::equal("nolabel", "")]),
        vec![1, 2, 3, 4, 5]
    );
}

#[test]
fn not_equal_matchers() {
    let (c, _) = sample_catalog();
    // `!=` keeps series lacking the label.
    assert_eq!(
        c.select(&[m(MatchOp::NotEqual, "unit", "C")]),
        vec![2, 3, 4, 5]
    );
    // `!=""` requires the label.
    assert_eq!(c.select(&[m(MatchOp::NotEqual, "unit", "")]), vec![1, 2, 5]);
    assert_eq!(
        c.select(&[
            Matcher::equal("__name__", "hum"),
            m(MatchOp::NotEqual, "site", "s1")
        ]),
        vec![5]
    );
    assert_eq!(
        c.select(&[m(MatchOp::NotEqual, "nolabel", "x")]),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        c.select(&[m(MatchOp::NotEqual, "nolabel", "")]),
        Vec::<SeriesId>::new()
    );
}

#[test]
fn regex_matchers() {
    let (c, _) = sample_catalog();
    assert_eq!(
        c.select(&[m(MatchOp::RegexMatch, "site", "s[12]")]),
        vec![1, 2, 4, 5]
    );
    assert_eq!(
        c.select(&[m(MatchOp::RegexMatch, "site", "s1|s3")]),
        vec![1, 3, 4]
    );
    assert_eq!(
        c.select(&[m(MatchOp::RegexMatch, "site", "s1|nope")]),
        vec![1, 4]
    );
    // Anchored: a partial match is no match.
    assert_eq!(
        c.select(&[m(MatchOp::RegexMatch, "site", "s")]),
        Vec::<SeriesId>::new()
    );
    // `.+` requires the label, `.*` matches everything.
    assert_eq!(
        c.select(&[m(MatchOp::RegexMatch, "unit", ".+")]),
        vec![1, 2, 5]
    );
    assert_eq!(
        c.select(&[m(MatchOp::RegexMatch, "unit", ".*")]),
        vec![1, 2, 3, 4, 5]
    );
    // A regex that also matches the empty string selects series lacking the label.
    assert_eq!(
        c.select(&[m(MatchOp::RegexMatch, "unit", "C|")]),
        vec![1, 3, 4]
    );
    assert_eq!(
        c.select(&[m(MatchOp::RegexMatch, "unit", "C?")]),
        vec![1, 3, 4]
    );
}

#[test]
fn negative_regex_matchers() {
    let (c, _) = sample_catalog();
    assert_eq!(
        c.select(&[m(MatchOp::RegexNoMatch, "unit", "C|F")]),
        vec![3, 4, 5]
    );
    assert_eq!(
        c.select(&[m(MatchOp::RegexNoMatch, "unit", "[CF]")]),
        vec![3, 4, 5]
    );
    // `!~".+"` selects series without the label, like `=""`.
    assert_eq!(
        c.select(&[m(MatchOp::RegexNoMatch, "unit", ".+")]),
        vec![3, 4]
    );
    assert_eq!(
        c.select(&[m(MatchOp::RegexNoMatch, "unit", ".*")]),
        Vec::<SeriesId>::new()
    );
    // `!~""` requires the label (rejects the empty string only).
    assert_eq!(
        c.select(&[m(MatchOp::RegexNoMatch, "unit", "")]),
        vec![1, 2, 5]
    );
    // Doesn't match empty and rejects "C": only series with unit=F or unit=%.
    assert_eq!(
        c.select(&[m(MatchOp::RegexNoMatch, "unit", "C|")]),
        vec![2, 5]
    );
    assert_eq!(
        c.select(&[
            Matcher::equal("__name__", "temp"),
            m(MatchOp::RegexNoMatch, "site", "s1|s2")
        ]),
        vec![3]
    );
}

#[test]
fn matcher_lists_that_all_match_empty_start_from_all_series() {
    let (c, _) = sample_catalog();
    assert_eq!(c.select(&[]), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        c.select(&[
            m(MatchOp::NotEqual, "site", "s1"),
            Matcher::equal("unit", "")
        ]),
        vec![3]
    );
    assert_eq!(
        c.select(&[m(MatchOp::RegexMatch, "x", ".*")]),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        Catalog::new(SeriesLimits::default()).select(&[]),
        Vec::<SeriesId>::new()
    );
}

#[test]
fn label_names_and_values() {
    let (c, _) = sample_catalog();
    assert_eq!(c.label_names(None), vec!["__name__", "site", "unit"]);
    assert_eq!(c.label_names(Some(&[3, 4, 99])), vec!["__name__", "site"]);
    assert_eq!(c.label_names(Some(&[])), Vec::<String>::new());
    assert_eq!(c.label_values("unit", None), vec!["%", "C", "F"]);
    assert_eq!(c.label_values("unit", Some(&[5, 3, 1, 1])), vec!["%", "C"]);
    assert_eq!(c.label_values("__name__", None), vec!["hum", "temp"]);
    assert_eq!(c.label_values("nolabel", None), Vec::<String>::new());
    assert_eq!(c.label_values("unit", Some(&[3])), Vec::<String>::new());
}

#[test]
fn creation_validates_and_enforces_the_series_limit() {
    let mut c = Catalog::new(SeriesLimits {
        max_series: 2,
        ..SeriesLimits::default()
    });
    let err = c.get_or_create(&l(&[("job", "x")])).unwrap_err();
    assert!(matches!(err, LimitError::MissingMetricName { .. }));
    c.get_or_create(&l(&[("__name__", "a")])).unwrap();
    c.get_or_create(&l(&[("__name__", "b")])).unwrap();
    let err = c.get_or_create(&l(&[("__name__", "c")])).unwrap_err();
    assert_eq!(err, LimitError::TooManySeries { limit: 2 });
    assert_eq!(
        err.to_string(),
        "series limit of 2 reached: no new series can be created"
    );
    // Existing series stay reachable at the limit, and removal makes room.
    assert_eq!(c.get_or_create(&l(&[("__name__", "a")])), Ok((1, false)));
    assert!(c.remove(1));
    assert_eq!(c.get_or_create(&l(&[("__name__", "c")])), Ok((3, true)));
    assert_eq!(c.next_id(), 4);
    check_invariants(&c);
}

#[test]
fn insert_is_idempotent_and_detects_conflicts() {
    let mut c = Catalog::new(SeriesLimits {
        max_series: 1,
        ..SeriesLimits::default()
    });
    let a = l(&[("__name__", "a")]);
    let b = l(&[("__name__", "b")]);
    c.insert(10, a.clone()).unwrap();
    c.insert(10, a.clone()).unwrap();
    assert_eq!(c.next_id(), 11);
    // Recovery ignores limits: this is the second series with max_series = 1.
    c.insert(3, b.clone()).unwrap();
    assert_eq!(c.next_id(), 11);
    assert_eq!(c.len(), 2);
    let err = c.insert(11, a.clone()).unwrap_err();
    assert_eq!(
        err,
        CatalogError::LabelsConflict {
            labels: "a{}".into(),
            existing_id: 10,
            new_id: 11
        }
    );
    let err = c.insert(10, l(&[("__name__", "z")])).unwrap_err();
    assert_eq!(
        err,
        CatalogError::IdConflict {
            id: 10,
            existing: "a{}".into(),
            new: "z{}".into()
        }
    );
    assert_eq!(
        c.insert(0, l(&[("__name__", "z")])),
        Err(CatalogError::InvalidId { id: 0 })
    );
    assert_eq!(
        c.insert(u64::MAX, l(&[("__name__", "z")])),
        Err(CatalogError::InvalidId { id: u64::MAX })
    );
    // Insert accepts label sets that ingestion would reject: they were accepted before.
    c.insert(4, l(&[("weird-name", "v")])).unwrap();
    assert_eq!(c.select(&[Matcher::equal("weird-name", "v")]), vec![4]);
    check_invariants(&c);
    // Created ids continue after recovered ones.
    let mut c2 = Catalog::new(SeriesLimits::default());
    c2.insert(41, a).unwrap();
    assert_eq!(c2.get_or_create(&b), Ok((42, true)));
}

#[test]
fn label_strings_are_shared_and_freed() {
    let mut c = Catalog::new(SeriesLimits::default());
    for i in 0..100 {
        c.get_or_create(&l(&[
            ("__name__", "m"),
            ("dev", &format!("d{i}")),
            ("site", "s"),
        ]))
        .unwrap();
    }
    // "__name__", "m", "dev", "site", "s" plus 100 device ids.
    assert_eq!(c.symbols.len(), 105);
    for id in 1..=100 {
        assert!(c.remove(id));
        check_invariants(&c);
    }
    assert_eq!(c.symbols.len(), 0);
    assert!(c.is_empty());
    assert_eq!(c.label_names(None), Vec::<String>::new());
    c.shrink_to_fit();
    assert_eq!(c.get_or_create(&l(&[("__name__", "m")])), Ok((101, true)));
    check_invariants(&c);
}

#[test]
fn literal_alternation_detection() {
    assert_eq!(query_literals("a|b|a|"), Some(vec!["a", "b"]));
    assert_eq!(
        query_literals("dev-01|dev-02"),
        Some(vec!["dev-01", "dev-02"])
    );
    assert_eq!(query_literals("a.b"), None);
    assert_eq!(query_literals("a\\|b"), None);
    assert_eq!(query_literals("(a|b)"), None);
}

#[test]
fn literal_prefix_detection() {
    use super::query::literal_prefix;
    assert_eq!(literal_prefix("dev-01.*"), Some("dev-01"));
    assert_eq!(literal_prefix(".*"), Some(""));
    assert_eq!(literal_prefix("a|b.*"), None);
    assert_eq!(literal_prefix("a.b.*"), None);
    assert_eq!(literal_prefix("a.+"), None);
    assert_eq!(literal_prefix("a\\.*"), None);
}

fn query_literals(p: &str) -> Option<Vec<&str>> {
    super::query::literal_alternatives(p)
}

// ---- property tests ----

const METRICS: &[&str] = &["cpu", "mem", "disk"];
const NAMES: &[&str] = &["x", "y", "z"];
const VALUES: &[&str] = &["1", "2", "10", "a", "b", "ab", "é", "\n", "a|b"];
const MATCH_NAMES: &[&str] = &["__name__", "x", "y", "z", "absent"];
const MATCH_VALUES: &[&str] = &[
    "",
    "1",
    "2",
    "10",
    "a",
    "b",
    "cpu",
    "nope",
    "a|b",
    ".*",
    ".+",
    "x.*",
    "1|",
    "a.*",
    "[ab]",
    "1|10|nope",
    "cpu|mem",
    "\n",
    "é|b",
    ".",
    "a\\|b",
    "é.*",
    "1.*",
    "a|1.*",
    ".*1",
    "c.*",
];

fn series_strategy() -> impl Strategy<Value = Labels> {
    (
        0..METRICS.len(),
        proptest::collection::vec(proptest::option::of(0..VALUES.len()), NAMES.len()),
    )
        .prop_map(|(metric, values)| {
            let mut labels = vec![Label::new("__name__", METRICS[metric])];
            for (name, value) in NAMES.iter().zip(values) {
                if let Some(v) = value {
                    labels.push(Label::new(*name, VALUES[v]));
                }
            }
            Labels::new(labels)
        })
}

fn matcher_strategy() -> impl Strategy<Value = Matcher> {
    (0..MATCH_NAMES.len(), 0..4usize, 0..MATCH_VALUES.len()).prop_map(|(n, op, v)| {
        let op = [
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::RegexMatch,
            MatchOp::RegexNoMatch,
        ][op];
        Matcher::new(op, MATCH_NAMES[n], MATCH_VALUES[v]).unwrap()
    })
}

fn brute_select(model: &BTreeMap<SeriesId, Labels>, matchers: &[Matcher]) -> Vec<SeriesId> {
    model
        .iter()
        .filter(|(_, labels)| matchers.iter().all(|m| m.matches_labels(labels)))
        .map(|(&id, _)| id)
        .collect()
}

fn brute_names(model: &BTreeMap<SeriesId, Labels>, ids: Option<&[SeriesId]>) -> Vec<String> {
    let set: BTreeSet<String> = model
        .iter()
        .filter(|(id, _)| ids.is_none_or(|ids| ids.contains(id)))
        .flat_map(|(_, labels)| labels.iter().map(|l| l.name.clone()))
        .collect();
    set.into_iter().collect()
}

fn brute_values(
    model: &BTreeMap<SeriesId, Labels>,
    name: &str,
    ids: Option<&[SeriesId]>,
) -> Vec<String> {
    let set: BTreeSet<String> = model
        .iter()
        .filter(|(id, _)| ids.is_none_or(|ids| ids.contains(id)))
        .filter_map(|(_, labels)| labels.get(name).map(str::to_owned))
        .collect();
    set.into_iter().collect()
}

#[derive(Debug, Clone)]
enum Op {
    Create(Labels),
    Insert(SeriesId, Labels),
    Remove(SeriesId),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => series_strategy().prop_map(Op::Create),
        2 => (0u64..40, series_strategy()).prop_map(|(id, l)| Op::Insert(id, l)),
        2 => (0u64..40).prop_map(Op::Remove),
    ]
}

/// Reference implementation of the catalog's bookkeeping.
#[derive(Default)]
struct Model {
    series: BTreeMap<SeriesId, Labels>,
    next_id: SeriesId,
}

impl Model {
    fn id_of(&self, labels: &Labels) -> Option<SeriesId> {
        self.series
            .iter()
            .find(|(_, l)| *l == labels)
            .map(|(&id, _)| id)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn select_equals_brute_force(
        series in proptest::collection::vec(series_strategy(), 0..40),
        matcher_lists in proptest::collection::vec(proptest::collection::vec(matcher_strategy(), 0..4), 1..8),
    ) {
        let mut c = Catalog::new(SeriesLimits::default());
        let mut model = BTreeMap::new();
        for s in &series {
            let (id, _) = c.get_or_create(s).unwrap();
            model.insert(id, s.clone());
        }
        for matchers in &matcher_lists {
            let got = c.select(matchers);
            let want = brute_select(&model, matchers);
            prop_assert_eq!(got, want, "matchers {:?}", matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>());
        }
        let subset: Vec<SeriesId> = model.keys().copied().filter(|id| id % 3 == 0).collect();
        prop_assert_eq!(c.label_names(None), brute_names(&model, None));
        prop_assert_eq!(c.label_names(Some(&subset)), brute_names(&model, Some(&subset)));
        for name in MATCH_NAMES {
            prop_assert_eq!(c.label_values(name, None), brute_values(&model, name, None));
            prop_assert_eq!(c.label_values(name, Some(&subset)), brute_values(&model, name, Some(&subset)));
        }
    }

    #[test]
    fn operation_sequences_keep_the_index_consistent(
        ops in proptest::collection::vec(op_strategy(), 0..60),
        matchers in proptest::collection::vec(matcher_strategy(), 0..3),
    ) {
        let mut c = Catalog::new(SeriesLimits::default());
        let mut model = Model { next_id: 1, ..Model::default() };
        for op in ops {
            match op {
                Op::Create(labels) => {
                    let got = c.get_or_create(&labels).unwrap();
                    let want = match model.id_of(&labels) {
                        Some(id) => (id, false),
                        None => {
                            let id = model.next_id;
                            model.next_id += 1;
                            model.series.insert(id, labels);
                            (id, true)
                        }
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Insert(id, labels) => {
                    let got = c.insert(id, labels.clone());
                    let ok = id != 0 && match (model.id_of(&labels), model.series.get(&id)) {
                        (Some(existing), _) => existing == id,
                        (None, Some(_)) => false,
                        (None, None) => {
                            model.series.insert(id, labels);
                            model.next_id = model.next_id.max(id + 1);
                            true
                        }
                    };
                    prop_assert_eq!(got.is_ok(), ok, "{:?}", got);
                }
                Op::Remove(id) => {
                    prop_assert_eq!(c.remove(id), model.series.remove(&id).is_some());
                }
            }
            prop_assert_eq!(c.len(), model.series.len());
            prop_assert_eq!(c.next_id(), model.next_id);
            check_invariants(&c);
        }
        for (&id, labels) in &model.series {
            prop_assert_eq!(c.labels(id), Some(labels.clone()));
        }
        prop_assert_eq!(c.select(&matchers), brute_select(&model.series, &matchers));
        prop_assert_eq!(c.label_names(None), brute_names(&model.series, None));
        for name in MATCH_NAMES {
            prop_assert_eq!(c.label_values(name, None), brute_values(&model.series, name, None));
        }
    }
}
