//! Reads the markdown tables of `../shared/vectors/oscore/rfc8613-appendix-c.md`.

use std::collections::HashMap;
use std::path::PathBuf;

pub(crate) fn vectors_path() -> PathBuf {
    // The repository root is the parent of this crate; shared/ sits beside the repository.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/vectors/oscore/rfc8613-appendix-c.md")
}

/// Section title (after "## ") -> row name -> cells (after the name column).
pub(crate) type Tables = HashMap<String, HashMap<String, Vec<String>>>;

fn clean(cell: &str) -> String {
    let c = cell.trim();
    if c.starts_with("(empty)") {
        return String::new();
    }
    // Take the first `...` code span when present (drops "(16 B)" style notes).
    if let Some(start) = c.find('`')
        && let Some(len) = c[start + 1..].find('`')
    {
        return c[start + 1..start + 1 + len].to_string();
    }
    c.to_string()
}

pub(crate) fn load() -> Tables {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out: Tables = HashMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("## ") {
            section = t.trim().to_string();
            continue;
        }
        let l = line.trim();
        if !l.starts_with('|') || l.starts_with("|---") || l.starts_with("| ---") {
            continue;
        }
        let cells: Vec<&str> = l.trim_matches('|').split('|').collect();
        if cells.len() < 2 {
            continue;
        }
        let name = cells[0].trim().to_string();
        let mut vals: Vec<String> = cells[1..].iter().map(|c| clean(c)).collect();
        for i in 1..vals.len() {
            if vals[i] == "same" {
                vals[i] = vals[i - 1].clone();
            }
        }
        out.entry(section.clone()).or_default().insert(name, vals);
    }
    out
}

pub(crate) fn hx(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|_| panic!("not hex: {s:?}"))
}

/// Finds a section whose title starts with `prefix`.
pub(crate) fn section<'a>(t: &'a Tables, prefix: &str) -> &'a HashMap<String, Vec<String>> {
    t.iter()
        .find(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no section {prefix}"))
}

pub(crate) fn cell<'a>(s: &'a HashMap<String, Vec<String>>, row: &str, col: usize) -> &'a str {
    s.get(row)
        .and_then(|r| r.get(col))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no row {row:?} col {col}"))
}
