//! `ip6tables -S` listings and `ip6tables-restore` batches: turning a rule
//! into its check or delete, and finding tagged rules in a listing.

use std::collections::BTreeMap;

/// `-A CHAIN rest` → `-C CHAIN rest`.
pub fn check_of(rule: &str) -> String {
    format!("-C {}", rule.strip_prefix("-A ").unwrap_or(rule))
}

/// `-A CHAIN rest` → `-D CHAIN rest`.
pub fn delete_of(rule: &str) -> String {
    format!("-D {}", rule.strip_prefix("-A ").unwrap_or(rule))
}

/// One `ip6tables-restore --noflush` batch for the filter table.
pub fn batch(lines: &[String]) -> String {
    table_batch("filter", lines)
}

/// One `ip6tables-restore --noflush` section for `table`.
pub fn table_batch(table: &str, lines: &[String]) -> String {
    let mut s = format!("*{table}\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    s
}

/// One `-A` line of an `ip6tables -S` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule<'a> {
    pub chain: &'a str,
    pub comment: Option<String>,
    pub line: &'a str,
}

/// Parse an `-A` line; `-P`/`-N` lines and anything else give `None`.
pub fn parse_rule(line: &str) -> Option<ListedRule<'_>> {
    let rest = line.strip_prefix("-A ")?;
    let chain = rest.split(' ').next()?;
    Some(ListedRule {
        chain,
        comment: comment_of(line),
        line,
    })
}

/// The `--comment` value as ip6tables prints it: quoted with `\"` escapes
/// when it holds spaces or quotes, bare otherwise.
pub(super) fn comment_of(line: &str) -> Option<String> {
    let at = line.find("--comment ")? + "--comment ".len();
    let rest = &line[at..];
    if let Some(q) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    } else {
        Some(rest.split(' ').next()?.to_string())
    }
}

/// Lines of a listing that carry exactly `tag`.
pub fn rules_with_tag<'a>(listing: &'a [String], tag: &str) -> Vec<&'a str> {
    listing
        .iter()
        .filter_map(|l| parse_rule(l))
        .filter(|r| r.comment.as_deref() == Some(tag))
        .map(|r| r.line)
        .collect()
}

/// What CHECK finds wrong with one pod's rules, given the listing of each
/// chain they live in (a chain absent from `listings` counts as empty);
/// empty = intact.
pub fn pod_defects(expected: &[String], listings: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out = Vec::new();
    // Within the port bucket the pod's DROP must come after its sources.
    let mut last_in: BTreeMap<String, usize> = BTreeMap::new();
    for r in expected {
        let Some(chain) = parse_rule(r).map(|p| p.chain.to_string()) else {
            continue;
        };
        let have = listings.get(&chain).map(Vec::as_slice).unwrap_or(&[]);
        match have.iter().position(|x| x == r) {
            None => out.push(format!("{chain} lacks rule `{r}`")),
            Some(i) => {
                if last_in.get(&chain).is_some_and(|l| i < *l) {
                    out.push(format!("{chain} has rule `{r}` out of order"));
                }
                last_in.insert(chain, i);
            }
        }
    }
    out
}
