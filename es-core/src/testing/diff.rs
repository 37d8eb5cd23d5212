//! What a failed expectation prints: a line diff of the two values.

use std::fmt::Debug;

use similar::{ChangeTag, TextDiff};

/// A line diff of the pretty `Debug` forms of `expected` and `actual`:
/// `-` marks a line only the expectation has, `+` one only the actual
/// value has.
pub(crate) fn diff(expected: &impl Debug, actual: &impl Debug) -> String {
    let (expected, actual) = (format!("{expected:#?}\n"), format!("{actual:#?}\n"));
    let mut out = String::from("--- expected\n+++ actual\n");
    for change in TextDiff::from_lines(&expected, &actual).iter_all_changes() {
        out.push(match change.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => ' ',
        });
        out.push_str(change.value());
        if !change.value().ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn only_the_changed_lines_are_marked() {
        let shown = diff(&vec![1, 2, 3], &vec![1, 5, 3]);
        assert_eq!(
            shown,
            "--- expected\n+++ actual\n [\n     1,\n-    2,\n+    5,\n     3,\n ]\n"
        );
    }
}
