//! The crate's files form layers: no file reaches, through `crate::` paths, a file that
//! reaches back to it. This reads `src/*.rs` and fails with the cycle if one appears.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `crate::<module>` a file's code names (comments and doc comments skipped), as
/// edges to the other files of `src/`.
fn module_graph(src: &Path) -> Graph {
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name != "lib" {
                sources.insert(name, std::fs::read_to_string(&path).expect("read file"));
            }
        }
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(name, text)| {
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let paths = crate_paths(&code);
            // A path through a root re-export (`crate::Bus`) would hide the edge.
            let hidden: Vec<_> = paths
                .iter()
                .filter(|p| p.starts_with(|c: char| c.is_uppercase()))
                .collect();
            assert!(
                hidden.is_empty(),
                "{name}.rs names {hidden:?} through the crate root; use the module path"
            );
            let edges = paths
                .into_iter()
                .filter(|m| modules.contains(m) && m != name)
                .collect();
            (name.clone(), edges)
        })
        .collect()
}

/// The first segment after each `crate::`, including each branch of `crate::{a, b::C}`.
fn crate_paths(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(body.split(',').map(|p| ident(p.trim())));
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// A cycle, as the path that closes it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn bus_core_files_have_no_use_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    // The reader sees the edges that hold the layers together.
    for (from, to) in [
        ("bus", "dispatch"),
        ("dispatch", "sink"),
        ("subscription", "hub"),
        ("pull", "sink"),
        ("router", "trie"),
        ("queue", "sink"),
    ] {
        assert!(
            graph[from].contains(to),
            "expected {from} -> {to} in {graph:#?}"
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
    // The sink seam is the bottom: it reaches nothing but the wait primitive.
    assert!(
        graph["sink"].iter().all(|m| m == "wait"),
        "{:?}",
        graph["sink"]
    );
}

#[test]
fn the_checker_finds_cycles_and_grouped_imports() {
    assert_eq!(
        crate_paths("use crate::a::X;\nuse crate::{b::Y, c};\nlet z = crate::d::f();"),
        ["a", "b", "c", "d"]
    );
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".into()].into());
    graph.insert("b".into(), ["c".into()].into());
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
    graph.get_mut("c").unwrap().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
