//! A trie of patterns for finding every subscription that matches a topic.
//!
//! Each node has literal children keyed by token, at most one `*` child, the values of
//! patterns ending at the node, and the values of patterns ending in `>` right below it.
//! Matching a topic walks the literal and `*` branches token by token, so its cost
//! depends on the topic's depth and the wildcards along the way, not on the number of
//! patterns, and it does not allocate.

use rustc_hash::FxHashMap;
use smol_str::SmolStr;

use syncbus_envelope::Pattern;

/// A multimap from [`Pattern`]s to values, queried by topic.
///
/// The same value may be stored under several patterns, and even several times under
/// one pattern; every stored entry is visited on a match, so callers dedup if they need
/// to. Within one node, values are visited in insertion order.
#[derive(Clone, Debug)]
pub(crate) struct PatternTrie<V> {
    root: Node<V>,
    len: usize,
}

#[derive(Clone, Debug)]
struct Node<V> {
    literals: FxHashMap<SmolStr, Node<V>>,
    star: Option<Box<Node<V>>>,
    /// Values of patterns that end at this node.
    values: Vec<V>,
    /// Values of patterns that end with a `>` child of this node.
    tail: Vec<V>,
}

impl<V> Node<V> {
    fn new() -> Self {
        Node {
            literals: FxHashMap::default(),
            star: None,
            values: Vec::new(),
            tail: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.literals.is_empty()
            && self.star.is_none()
            && self.values.is_empty()
            && self.tail.is_empty()
    }
}

impl<V: Clone + PartialEq> PatternTrie<V> {
    /// Makes an empty trie.
    pub(crate) fn new() -> Self {
        PatternTrie {
            root: Node::new(),
            len: 0,
        }
    }

    /// Stores `value` under `pattern`, after any values already stored under it.
    pub(crate) fn insert(&mut self, pattern: &Pattern, value: V) {
        let mut node = &mut self.root;
        for token in pattern.tokens() {
            node = match token {
                // Validation puts `>` last, so the pattern ends here.
                ">" => {
                    node.tail.push(value);
                    self.len += 1;
                    return;
                }
                "*" => node.star.get_or_insert_with(|| Box::new(Node::new())),
                literal => node
                    .literals
                    .entry(SmolStr::new(literal))
                    .or_insert_with(Node::new),
            };
        }
        node.values.push(value);
        self.len += 1;
    }

    /// Removes one entry of `value` stored under `pattern`, pruning nodes left empty.
    ///
    /// Returns `false` if there was no such entry.
    pub(crate) fn remove(&mut self, pattern: &Pattern, value: &V) -> bool {
        let removed = remove_from(&mut self.root, pattern.tokens(), value);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` with every value whose pattern matches `topic`, once per stored entry.
    ///
    /// `topic` is assumed to be a valid topic; for other strings the values visited are
    /// unspecified, but this never panics.
    pub(crate) fn for_each_match(&self, topic: &str, mut f: impl FnMut(&V)) {
        visit(&self.root, topic, &mut f);
    }

    /// Returns the number of stored entries.
    #[allow(dead_code, reason = "not every user of the trie needs it")]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Returns `true` if no entry is stored.
    #[allow(dead_code, reason = "not every user of the trie needs it")]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<V: Clone + PartialEq> Default for PatternTrie<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Matches the not yet consumed part of the topic, `rest`, which has at least one token,
/// against the patterns below `node`.
fn visit<V>(node: &Node<V>, rest: &str, f: &mut impl FnMut(&V)) {
    // At least one token is left, which is all a `>` needs.
    node.tail.iter().for_each(&mut *f);
    let (token, after) = match rest.split_once('.') {
        Some((token, after)) => (token, Some(after)),
        None => (rest, None),
    };
    if let Some(child) = node.literals.get(token) {
        step(child, after, f);
    }
    if let Some(child) = &node.star {
        step(child, after, f);
    }
}

/// Continues at `child` after it consumed a token; `after` is what follows that token.
fn step<V>(child: &Node<V>, after: Option<&str>, f: &mut impl FnMut(&V)) {
    match after {
        None => child.values.iter().for_each(f),
        Some(rest) => visit(child, rest, f),
    }
}

fn remove_from<'a, V: PartialEq>(
    node: &mut Node<V>,
    mut tokens: impl Iterator<Item = &'a str>,
    value: &V,
) -> bool {
    match tokens.next() {
        None => remove_first(&mut node.values, value),
        Some(">") => remove_first(&mut node.tail, value),
        Some("*") => {
            let Some(child) = node.star.as_deref_mut() else {
                return false;
            };
            let removed = remove_from(child, tokens, value);
            if removed && child.is_empty() {
                node.star = None;
            }
            removed
        }
        Some(literal) => {
            let Some(child) = node.literals.get_mut(literal) else {
                return false;
            };
            let removed = remove_from(child, tokens, value);
            if removed && child.is_empty() {
                node.literals.remove(literal);
            }
            removed
        }
    }
}

fn remove_first<V: PartialEq>(values: &mut Vec<V>, value: &V) -> bool {
    match values.iter().position(|v| v == value) {
        Some(i) => {
            // `Vec::remove` rather than `swap_remove` keeps insertion order.
            values.remove(i);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Pattern {
        Pattern::new(s).unwrap()
    }

    fn matched<V: Clone + PartialEq + Ord>(trie: &PatternTrie<V>, topic: &str) -> Vec<V> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |v| out.push(v.clone()));
        out.sort();
        out
    }

    fn node_count<V>(node: &Node<V>) -> usize {
        1 + node.literals.values().map(node_count).sum::<usize>()
            + node.star.as_deref().map_or(0, node_count)
    }

    #[test]
    fn literal_and_wildcards() {
        let mut trie = PatternTrie::new();
        trie.insert(&p("orders.created"), 1);
        trie.insert(&p("orders.*"), 2);
        trie.insert(&p("orders.>"), 3);
        trie.insert(&p(">"), 4);
        trie.insert(&p("*.*.created"), 5);
        trie.insert(&p("payments.*"), 6);

        assert_eq!(matched(&trie, "orders.created"), [1, 2, 3, 4]);
        assert_eq!(matched(&trie, "orders.updated"), [2, 3, 4]);
        assert_eq!(matched(&trie, "orders.eu.created"), [3, 4, 5]);
        assert_eq!(matched(&trie, "orders"), [4]);
        assert_eq!(matched(&trie, "payments.created"), [4, 6]);
        assert_eq!(matched(&trie, "users.eu.created"), [4, 5]);
        assert_eq!(trie.len(), 6);
    }

    #[test]
    fn value_under_two_matching_patterns_is_visited_twice() {
        let mut trie = PatternTrie::new();
        trie.insert(&p("a.*"), 7);
        trie.insert(&p("a.>"), 7);
        trie.insert(&p("a.b"), 7);
        assert_eq!(matched(&trie, "a.b"), [7, 7, 7]);
        assert_eq!(matched(&trie, "a.c"), [7, 7]);
    }

    #[test]
    fn duplicate_entries_are_removed_one_at_a_time() {
        let mut trie = PatternTrie::new();
        trie.insert(&p("a.b"), 1);
        trie.insert(&p("a.b"), 1);
        assert_eq!(trie.len(), 2);
        assert!(trie.remove(&p("a.b"), &1));
        assert_eq!(matched(&trie, "a.b"), [1]);
        assert!(trie.remove(&p("a.b"), &1));
        assert!(!trie.remove(&p("a.b"), &1));
        assert!(trie.is_empty());
    }

    #[test]
    fn values_in_one_node_are_visited_in_insertion_order() {
        let mut trie = PatternTrie::new();
        for v in [3, 1, 2] {
            trie.insert(&p("a.b"), v);
        }
        assert!(trie.remove(&p("a.b"), &3));
        trie.insert(&p("a.b"), 0);
        let mut seen = Vec::new();
        trie.for_each_match("a.b", |v| seen.push(*v));
        assert_eq!(seen, [1, 2, 0]);
    }

    #[test]
    fn remove_misses_leave_the_trie_alone() {
        let mut trie = PatternTrie::new();
        trie.insert(&p("a.*.c"), 1);
        trie.insert(&p("a.>"), 2);
        assert!(!trie.remove(&p("a.*.c"), &2));
        assert!(!trie.remove(&p("a.*"), &1));
        assert!(!trie.remove(&p("a.b.c"), &1));
        assert!(!trie.remove(&p("x.>"), &2));
        assert!(!trie.remove(&p(">"), &2));
        assert_eq!(trie.len(), 2);
        assert_eq!(matched(&trie, "a.b.c"), [1, 2]);
    }

    #[test]
    fn remove_prunes_empty_nodes() {
        let mut trie = PatternTrie::new();
        trie.insert(&p("a.b.c.d"), 1);
        trie.insert(&p("a.*.>"), 2);
        trie.insert(&p("a.b"), 3);
        // root, a, a.b, a.b.c, a.b.c.d and a.*; the `>` lives in a.* itself.
        assert_eq!(node_count(&trie.root), 6);

        assert!(trie.remove(&p("a.b.c.d"), &1));
        // `c` and `d` are gone; `a.b` still holds a value.
        assert_eq!(node_count(&trie.root), 4);
        assert!(trie.remove(&p("a.*.>"), &2));
        assert_eq!(node_count(&trie.root), 3);
        assert!(trie.remove(&p("a.b"), &3));
        assert_eq!(node_count(&trie.root), 1);
        assert!(trie.root.is_empty());
        assert!(trie.is_empty());
    }

    #[test]
    fn malformed_topics_do_not_panic() {
        let mut trie = PatternTrie::new();
        trie.insert(&p(">"), 1);
        trie.insert(&p("*"), 2);
        trie.insert(&p("a.*"), 3);
        for topic in ["", ".", "a.", ".a", "a..b", "a.*", "a.>"] {
            trie.for_each_match(topic, |_| {});
        }
    }

    const TOKENS: &[&str] = &["a", "b", "c"];

    fn topic_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(TOKENS), 1..=5).prop_map(|t| t.join("."))
    }

    fn pattern_strategy() -> impl Strategy<Value = Pattern> {
        let token = prop_oneof![3 => prop::sample::select(TOKENS), 1 => Just("*")];
        (prop::collection::vec(token, 0..=4), any::<bool>()).prop_filter_map(
            "empty pattern",
            |(mut tokens, tail)| {
                if tail {
                    tokens.push(">");
                }
                (!tokens.is_empty()).then(|| p(&tokens.join(".")))
            },
        )
    }

    fn expected(entries: &[(Pattern, usize)], topic: &str) -> Vec<usize> {
        let mut out: Vec<usize> = entries
            .iter()
            .filter(|(p, _)| p.matches_str(topic))
            .map(|&(_, v)| v)
            .collect();
        out.sort();
        out
    }

    proptest! {
        #[test]
        fn matches_agree_with_pattern_matches(
            patterns in prop::collection::vec(pattern_strategy(), 0..40),
            topics in prop::collection::vec(topic_strategy(), 1..10),
        ) {
            let mut trie = PatternTrie::new();
            let entries: Vec<(Pattern, usize)> = patterns.into_iter().enumerate().map(|(i, p)| (p, i)).collect();
            for (pattern, value) in &entries {
                trie.insert(pattern, *value);
            }
            prop_assert_eq!(trie.len(), entries.len());
            for topic in &topics {
                prop_assert_eq!(matched(&trie, topic), expected(&entries, topic), "topic {}", topic);
            }
        }

        #[test]
        fn matches_agree_after_removals(
            patterns in prop::collection::vec(pattern_strategy(), 0..40),
            // Values repeat so several entries share a value, some under one pattern.
            values in prop::collection::vec(0..8usize, 40),
            remove_mask in prop::collection::vec(any::<bool>(), 40),
            topics in prop::collection::vec(topic_strategy(), 1..10),
        ) {
            let mut trie = PatternTrie::new();
            let mut entries: Vec<(Pattern, usize)> = patterns.into_iter().zip(values).collect();
            for (pattern, value) in &entries {
                trie.insert(pattern, *value);
            }
            let mut kept = Vec::new();
            for ((pattern, value), remove) in entries.drain(..).zip(remove_mask) {
                if remove {
                    prop_assert!(trie.remove(&pattern, &value));
                } else {
                    kept.push((pattern, value));
                }
            }
            prop_assert_eq!(trie.len(), kept.len());
            for topic in &topics {
                prop_assert_eq!(matched(&trie, topic), expected(&kept, topic), "topic {}", topic);
            }
            for (pattern, value) in &kept {
                prop_assert!(trie.remove(pattern, value));
            }
            prop_assert!(trie.is_empty());
            prop_assert!(trie.root.is_empty(), "nodes left after removing everything: {:?}", trie.root);
        }
    }
}
