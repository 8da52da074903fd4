//! Line diffs for assertion messages.

/// A line diff of `expected` and `actual`: unchanged lines start with two spaces, lines only in
/// `expected` with `- `, lines only in `actual` with `+ `.
pub fn lines(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str("  ");
            out.push_str(a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str("- ");
            out.push_str(a[i]);
            i += 1;
        } else {
            out.push_str("+ ");
            out.push_str(b[j]);
            j += 1;
        }
        out.push('\n');
    }
    out
}

/// Pretty JSON, keys sorted (serde_json's map is ordered), for diffs.
pub fn json_text(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Panics with a diff when `actual` is not `expected`.
#[track_caller]
pub fn assert_json_eq(actual: &serde_json::Value, expected: &serde_json::Value) {
    if actual != expected {
        panic!(
            "JSON values differ (- expected, + actual):\n{}",
            lines(&json_text(expected), &json_text(actual))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_marks_removed_and_added_lines() {
        assert_eq!(lines("a\nb\nc", "a\nx\nc"), "  a\n- b\n+ x\n  c\n");
        assert_eq!(lines("", "a"), "+ a\n");
        assert_eq!(lines("a", ""), "- a\n");
    }

    #[test]
    #[should_panic(expected = "-   \"status\": \"Enabled\"")]
    fn json_assertions_show_the_difference() {
        assert_json_eq(
            &serde_json::json!({"status": "Disabled"}),
            &serde_json::json!({"status": "Enabled"}),
        );
    }
}
