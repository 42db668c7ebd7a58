//! Finding the line of a key in a job file, for error messages.
//!
//! toml gives the span of a node's table header; the keys of that node are on
//! the lines after it, up to the next header.

use std::ops::Range;

/// The 1-based line of byte `offset`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The line where `key` is set within the node whose header spans `header`,
/// or the header's line if it is not found (a missing field, say).
pub(crate) fn key_line(text: &str, header: &Range<usize>, key: &str) -> usize {
    let first = line_of(text, header.start);
    for (i, line) in text.lines().enumerate().skip(first - 1) {
        if i + 1 > first && line.trim_start().starts_with('[') {
            break;
        }
        if sets_key(line, key) {
            return i + 1;
        }
    }
    first
}

/// Whether `line` contains `key` as a whole word followed by `=` or `.`.
fn sets_key(line: &str, key: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    line.match_indices(key).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + key.len()..].trim_start_matches('"').trim_start();
        !before.is_some_and(word) && (after.starts_with('=') || after.starts_with('.'))
    })
}

/// The key an error at `span` of `text` is about: the key itself, or the
/// key whose value the span points into (used to map an error in a
/// re-serialized table back to the original file).
pub(crate) fn key_at(text: &str, span: Range<usize>) -> Option<String> {
    let line_start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = &text[line_start..line_end];
    let key_part = match line.find('=') {
        Some(eq) if span.start >= line_start + eq => &line[..eq],
        _ => text.get(span)?,
    };
    let key: String = key_part
        .trim()
        .trim_matches('"')
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_in_their_node() {
        let text = "[job]\nname = \"x\"\n\n[source.a]\nkind = \"nexmark\"\nevents = 5\n\n[source.b]\nevents = 6\n";
        let a = text.find("[source.a]").unwrap();
        let header = a..a + 10;
        assert_eq!(key_line(text, &header, "events"), 6);
        assert_eq!(key_line(text, &header, "missing"), 4);
        let b = text.find("[source.b]").unwrap();
        assert_eq!(key_line(text, &(b..b + 10), "events"), 9);
        let inline = "[sink]\nx = { kind = \"stdout\", every = 3 }\n";
        let at = inline.find('{').unwrap();
        assert_eq!(key_line(inline, &(at..at + 5), "every"), 2);
    }
}
