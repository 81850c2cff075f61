//! Which indices take part: patterns in Elasticsearch's multi-target syntax (`shop-*`,
//! `logs-*,-logs-debug`), always without system and hidden indices (`.`-prefixed).

/// Query parameters for every request addressed to a selection: missing concrete indices and
/// patterns that match nothing are not errors, and only open indices are expanded.
pub(crate) const SELECTION_PARAMS: [(&str, &str); 3] = [
    ("ignore_unavailable", "true"),
    ("allow_no_indices", "true"),
    ("expand_wildcards", "open"),
];

/// The indices a store reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSelection {
    patterns: Vec<String>,
}

impl Default for IndexSelection {
    fn default() -> Self {
        Self {
            patterns: vec!["*".to_string()],
        }
    }
}

impl IndexSelection {
    /// Patterns such as `*`, `shop-*`, `-shop-test`; comma-separated lists are split.
    pub fn new<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Result<Self, String> {
        let patterns: Vec<String> = patterns
            .into_iter()
            .flat_map(|p| {
                p.as_ref()
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|p| !p.is_empty())
            .collect();
        if patterns.iter().all(|p| p.starts_with('-')) {
            return Err(
                "the index patterns select nothing: give at least one that is not an exclusion"
                    .to_string(),
            );
        }
        if let Some(bad) = patterns.iter().find(|p| {
            p.chars()
                .any(|c| matches!(c, '/' | '\\' | '?' | '"' | '<' | '>' | '|' | ' ' | '#'))
        }) {
            return Err(format!("'{bad}' is not an index pattern"));
        }
        Ok(Self { patterns })
    }

    /// The selection as a path segment: the patterns, then the exclusion of `.`-prefixed indices.
    pub fn path(&self) -> String {
        let mut parts = self.patterns.clone();
        parts.push("-.*".to_string());
        parts.join(",")
    }

    /// Whether an index takes part (the same rules Elasticsearch applies to the path: an index
    /// is in when a pattern before any exclusion that matches it includes it).
    pub fn contains(&self, index: &str) -> bool {
        if index.starts_with('.') {
            return false;
        }
        let mut selected = false;
        for pattern in &self.patterns {
            match pattern.strip_prefix('-') {
                Some(excluded) if glob(excluded, index) => selected = false,
                Some(_) => {}
                None if glob(pattern, index) => selected = true,
                None => {}
            }
        }
        selected
    }
}

impl std::fmt::Display for IndexSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.patterns.join(","))
    }
}

/// `*` matches any run of characters; everything else matches itself. Compared byte by byte,
/// with no allocation (it runs for every document read): in UTF-8 no character's bytes start
/// inside another's, so a byte match of the whole text is a character match.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_follow_patterns_and_exclusions() {
        let all = IndexSelection::default();
        assert!(all.contains("books"));
        assert!(!all.contains(".kibana"));
        assert_eq!(all.path(), "*,-.*");
        let some = IndexSelection::new(["shop-*,-shop-test", "orders"]).unwrap();
        assert!(some.contains("shop-eu"));
        assert!(!some.contains("shop-test"));
        assert!(some.contains("orders"));
        assert!(!some.contains("orders-old"));
        assert_eq!(some.path(), "shop-*,-shop-test,orders,-.*");
        assert!(IndexSelection::new(["-x"]).is_err());
        assert!(IndexSelection::new(["a b"]).is_err());
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("a*c", "abbbc"));
        assert!(glob("*", ""));
        assert!(!glob("a*c", "abbbd"));
        assert!(glob("t_*_x*", "t_1_xyz"));
        // Characters of several bytes: a star runs over them whole, a literal matches itself.
        assert!(glob("café-*", "café-été"));
        assert!(glob("*é", "thé"));
        assert!(!glob("caf*e", "café"));
        assert!(glob("日*本", "日の本"));
        assert!(!glob("日*本", "日の"));
    }
}
