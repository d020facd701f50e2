//! The files of each crate depend on each other in one direction: no cycle of `crate::`,
//! `super::` or `self::` paths between the files of one crate.
//!
//! A path is resolved to the file that defines what it names. Re-exports (`pub use` in a
//! `lib.rs` or `mod.rs`) are followed to the file they re-export from, so a crate's flat
//! surface in `lib.rs` is not a dependency of everything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Removes comments, string and char literals, so only code is scanned.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"') => {
                // Raw strings: r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) == Some(&b'"') && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
                    j += 1;
                    loop {
                        if j >= b.len() {
                            break;
                        }
                        if b[j] == b'"' && b[j + 1..].iter().take(hashes).all(|&c| c == b'#') {
                            j += 1 + hashes;
                            break;
                        }
                        j += 1;
                    }
                    out.push_str("\"\"");
                    i = j;
                } else {
                    out.push('r');
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                // A char literal (not a lifetime).
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("' '");
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// Every path starting with `crate::`, `super::` or `self::`, with `{a, b::c}` groups
/// expanded into whole paths.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if boundary {
            for head in ["crate", "super", "self"] {
                let end = i + head.len();
                if chars[i..].starts_with(&head.chars().collect::<Vec<_>>())
                    && chars.get(end) == Some(&':')
                    && chars.get(end + 1) == Some(&':')
                {
                    let (tree, next) = parse_tree(&chars, end + 2);
                    for tail in tree {
                        let mut p = vec![head.to_owned()];
                        p.extend(tail);
                        found.push(p);
                    }
                    i = next;
                    break;
                }
            }
        }
        i += 1;
    }
    found
}

/// Parses `a::b::{c, d::e}` from `at`; returns the expanded tails and where it stopped.
fn parse_tree(chars: &[char], mut at: usize) -> (Vec<Vec<String>>, usize) {
    let skip_ws = |at: &mut usize| {
        while *at < chars.len() && chars[*at].is_whitespace() {
            *at += 1;
        }
    };
    skip_ws(&mut at);
    if chars.get(at) == Some(&'{') {
        at += 1;
        let mut all = Vec::new();
        loop {
            skip_ws(&mut at);
            match chars.get(at) {
                Some('}') => return (all, at + 1),
                Some(',') => at += 1,
                None => return (all, at),
                _ => {
                    let (sub, next) = parse_tree(chars, at);
                    all.extend(sub);
                    if next == at {
                        at += 1;
                    } else {
                        at = next;
                    }
                }
            }
        }
    }
    let start = at;
    while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
        at += 1;
    }
    let word: String = chars[start..at].iter().collect();
    if word.is_empty() {
        return (vec![Vec::new()], at);
    }
    if chars.get(at) == Some(&':') && chars.get(at + 1) == Some(&':') {
        let (tails, next) = parse_tree(chars, at + 2);
        let out = tails
            .into_iter()
            .map(|t| {
                let mut p = vec![word.clone()];
                p.extend(t);
                p
            })
            .collect();
        return (out, next);
    }
    (vec![vec![word]], at)
}

struct Crate {
    /// Module path → its source, code only.
    modules: BTreeMap<Module, String>,
    /// (module, name) → the module a `pub use` there re-exports `name` from.
    reexports: BTreeMap<(Module, String), Module>,
}

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Makes a path absolute (from the crate root) as seen from `module`.
fn absolute(module: &Module, path: &[String]) -> Module {
    let mut base = match path[0].as_str() {
        "crate" => Vec::new(),
        "self" => module.clone(),
        _ => {
            let mut m = module.clone();
            m.pop();
            m
        }
    };
    let mut rest = &path[1..];
    while rest.first().map(String::as_str) == Some("super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    base
}

impl Crate {
    fn load(src: &Path) -> Crate {
        let mut files = Vec::new();
        rs_files(src, &mut files);
        let modules: BTreeMap<Module, String> = files
            .iter()
            .filter(|f| !f.components().any(|c| c.as_os_str() == "bin"))
            .map(|f| {
                (
                    module_of(src, f),
                    code_only(&fs::read_to_string(f).unwrap()),
                )
            })
            .collect();
        let mut reexports = BTreeMap::new();
        for (m, code) in &modules {
            for stmt in code.split(';') {
                let stmt = stmt.trim();
                let Some(at) = stmt.find("use ") else {
                    continue;
                };
                if !stmt[..at].trim_start().starts_with("pub") {
                    continue;
                }
                for p in paths(&stmt[at..]) {
                    let Some(name) = p.last() else { continue };
                    let target = absolute(m, &p[..p.len() - 1]);
                    reexports.insert((m.clone(), name.clone()), target);
                }
            }
        }
        Crate { modules, reexports }
    }

    /// The module whose file defines what `path` (absolute) names.
    fn definer(&self, path: &[String], depth: usize) -> Option<Module> {
        let mut i = path.len();
        while i > 0 && !self.modules.contains_key(&path[..i]) {
            i -= 1;
        }
        let module = path[..i].to_vec();
        if i < path.len() && depth < 16 {
            if let Some(from) = self.reexports.get(&(module.clone(), path[i].clone())) {
                let mut next = from.clone();
                next.extend(path[i..].iter().cloned());
                if next != path {
                    return self.definer(&next, depth + 1);
                }
            }
        }
        self.modules.contains_key(&module).then_some(module)
    }

    fn edges(&self) -> BTreeMap<Module, BTreeSet<Module>> {
        let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (m, code) in &self.modules {
            let out = edges.entry(m.clone()).or_default();
            for stmt in code.split(';') {
                let reexport = stmt.trim_start().starts_with("pub") && stmt.contains("use ");
                for p in paths(stmt) {
                    // A parent's `pub use self::child::X` is its surface, not a dependency.
                    if reexport {
                        continue;
                    }
                    let abs = absolute(m, &p);
                    if let Some(target) = self.definer(&abs, 0) {
                        if &target != m && !target.is_empty() {
                            out.insert(target);
                        }
                    }
                }
            }
        }
        edges
    }
}

fn find_cycle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, u8>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if state.get(m).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(m, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn show(m: &Module) -> String {
    if m.is_empty() {
        "lib".to_owned()
    } else {
        m.join("::")
    }
}

#[test]
fn no_crate_has_a_cycle_between_its_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut srcs: Vec<PathBuf> = vec![root.join("src")];
    for entry in fs::read_dir(root.join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            srcs.push(src);
        }
    }
    assert!(srcs.len() >= 6, "found the crates: {srcs:?}");
    let mut cycles = Vec::new();
    for src in &srcs {
        let krate = Crate::load(src);
        if let Some(cycle) = find_cycle(&krate.edges()) {
            let names: Vec<String> = cycle.iter().map(show).collect();
            cycles.push(format!("{}: {}", src.display(), names.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    fs::write(src.join("lib.rs"), "mod a;\nmod b;\npub use crate::a::A;\n").unwrap();
    fs::write(
        src.join("a.rs"),
        "use crate::{b::B, c};\npub struct A(B);\n",
    )
    .unwrap();
    fs::write(
        src.join("b.rs"),
        "// use crate::a::A; in a comment is no edge\npub struct B;\nfn f() -> crate::A { todo() }\n",
    )
    .unwrap();
    let krate = Crate::load(src);
    let cycle = find_cycle(&krate.edges()).map(|c| c.iter().map(show).collect::<Vec<_>>());
    assert!(
        matches!(cycle.as_deref(), Some([a, b, c]) if a == c && a != b),
        "a -> b -> a (through lib's re-export of A): {cycle:?}"
    );
    fs::write(src.join("b.rs"), "pub struct B;\n").unwrap();
    assert_eq!(find_cycle(&Crate::load(src).edges()), None);
}
