//! A line diff for `--dry-run`: what applying a policy would change.

/// Unified-style line diff (`-` removed, `+` added, ` ` kept) by longest common subsequence.
/// Policies are small (IAM caps them at 10 KB), so the quadratic table is fine.
pub fn line_diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
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
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!(" {}\n", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] > lcs[i + 1][j]) {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn diff() {
        assert_eq!(
            super::line_diff("a\nb\nc\n", "a\nx\nc\n"),
            " a\n-b\n+x\n c\n"
        );
        assert_eq!(super::line_diff("", "a\n"), "+a\n");
        assert_eq!(super::line_diff("a\n", "a\n"), " a\n");
    }
}
