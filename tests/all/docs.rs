//! The documentation's links: every relative link of README.md, docs/*.md and tests/README.md
//! points to a file that exists, and every `#anchor` to a heading of the page it names (by
//! GitHub's rules for heading ids). No server needed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The repository's root: the essync crate lives in `host/`.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the essync crate is inside its workspace")
        .to_path_buf()
}

/// The pages whose links are checked.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![root.join("README.md"), root.join("tests/README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("the docs folder is readable");
    for entry in docs {
        let path = entry.expect("a docs entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

/// The lines of a page that are prose, not code: fenced blocks and indented code blocks (four
/// spaces after a blank line or another code line) are left out.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut fenced = false;
    let mut indented_code = false;
    let mut previous_blank = true;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let blank = line.trim().is_empty();
        indented_code = line.starts_with("    ") && (previous_blank || indented_code) && !blank
            || (indented_code && blank);
        previous_blank = blank;
        if !fenced && !indented_code {
            lines.push(line);
        }
    }
    lines
}

/// A line with its code spans (`...`) removed: what they hold is never a link.
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join("")
}

/// The targets of a page's links: inline `[text](target)` and reference `[label]: target`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let line = without_code_spans(line);
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some((_, rest)) = trimmed.split_once("]:")
        {
            if let Some(target) = rest.split_whitespace().next() {
                targets.push(target.to_string());
            }
            continue;
        }
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or("");
            targets.push(target.to_string());
            rest = &after[end..];
        }
    }
    targets
}

/// The id GitHub gives a heading: lowercase, links reduced to their text, every character but
/// letters, digits, spaces, `-` and `_` dropped, spaces turned to `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](target)` counts as its text.
    while let Some(start) = rest.find("](") {
        text.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        rest = after.find(')').map_or("", |end| &after[end + 1..]);
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a page offers: one per heading, a repeated one numbered `-1`, `-2`, ... as
/// GitHub does.
fn anchors(text: &str) -> HashSet<String> {
    let mut anchors = HashSet::new();
    for line in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim());
        let mut anchor = base.clone();
        let mut n = 0;
        while !anchors.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
    }
    anchors
}

/// What is wrong with one page's links, one line per broken link.
fn broken_links(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", page.display()));
    let dir = page.parent().expect("a page is in a folder");
    let mut broken = Vec::new();
    for target in link_targets(&text) {
        if target.is_empty() {
            broken.push(format!("{}: an empty link", page.display()));
            continue;
        }
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let file = if path.is_empty() {
            page.to_path_buf()
        } else {
            dir.join(path)
        };
        if !file.exists() {
            broken.push(format!(
                "{}: {target}: no file {}",
                page.display(),
                file.display()
            ));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        let target_text = std::fs::read_to_string(&file).unwrap_or_default();
        if file.extension().is_none_or(|e| e != "md") || !anchors(&target_text).contains(anchor) {
            broken.push(format!(
                "{}: {target}: no heading #{anchor} in {}",
                page.display(),
                file.display()
            ));
        }
    }
    broken
}

#[test]
fn every_link_of_the_documentation_leads_somewhere() {
    let root = root();
    let pages = pages(&root);
    assert!(
        pages.len() > 3,
        "the README, tests/README.md and docs/ are found"
    );
    let broken: Vec<String> = pages.iter().flat_map(|page| broken_links(page)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn headings_get_github_ids() {
    assert_eq!(slug("`-s`: existing data"), "-s-existing-data");
    assert_eq!(
        slug("Writing your own: `essync policy new`"),
        "writing-your-own-essync-policy-new"
    );
    assert_eq!(
        slug("Security: TLS, users, secrets"),
        "security-tls-users-secrets"
    );
    assert_eq!(slug("See [the docs](docs/x.md) now"), "see-the-docs-now");
    let repeated = anchors("# Notes\n\n## Notes\n\n    # not a heading\n```\n# nor this\n```\n");
    let expected: HashSet<String> = ["notes", "notes-1"].map(String::from).into();
    assert_eq!(repeated, expected);
}

#[test]
fn links_in_code_are_not_links() {
    let text =
        "See [a](a.md#x) and `[b](b.md)`.\n\n    [c](c.md)\n\n```\n[d](d.md)\n```\n[e]: e.md\n";
    assert_eq!(link_targets(text), ["a.md#x", "e.md"]);
}

#[test]
fn a_broken_link_or_anchor_is_found() {
    let dir = std::env::temp_dir().join(format!("essync-docs-links-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    std::fs::write(dir.join("other.md"), "# Other\n\n## A part\n").expect("a scratch page");
    let page = dir.join("page.md");
    std::fs::write(
        &page,
        "# Page\n\n[fine](other.md#a-part) [self](#page) [gone](missing.md) \
         [no part](other.md#no-part) [no self](#nothing)\n",
    )
    .expect("a scratch page");
    let broken = broken_links(&page);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].contains("missing.md"), "{broken:#?}");
    assert!(broken[1].contains("#no-part"), "{broken:#?}");
    assert!(broken[2].contains("#nothing"), "{broken:#?}");
}
