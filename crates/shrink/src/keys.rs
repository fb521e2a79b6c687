//! Static key retirement: which long-lived access keys (AKIA…) are old, unused, belong to
//! root, or sit beside a console password — from the IAM credential report and CloudTrail.
//!
//! The credential report (`aws iam get-credential-report`, CSV, 22 columns) names keys by
//! slot (1, 2), not by id; CloudTrail names them by id. Both count as evidence of use: a key
//! is "unused" only when neither shows use within the window. Deactivation (never deletion)
//! is the reversible remedy; the ids come from `ListAccessKeys`, in creation order, which is
//! the report's slot order.

use std::collections::BTreeMap;

use serde::Serialize;

/// One row of the credential report, the columns this audit reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportRow {
    pub user: String,
    pub arn: String,
    pub password_enabled: bool,
    /// Per key slot: (active, last rotated ms, last used ms).
    pub keys: [(bool, Option<i64>, Option<i64>); 2],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("credential report: no header line")]
    Empty,
    #[error("credential report: column {0:?} missing from the header")]
    Column(&'static str),
    #[error("credential report line {0}: {1} fields, the header has {2}")]
    Width(usize, usize, usize),
}

/// `N/A`, `not_supported`, `no_information` and empty mean "no value".
fn date(v: &str) -> Option<i64> {
    iam::condition::parse_date(v)
}

/// Parse the credential report CSV (the decoded `Content`). Fields never contain commas.
pub fn parse_report(csv: &str) -> Result<Vec<ReportRow>, ReportError> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or(ReportError::Empty)?
        .split(',')
        .map(str::trim)
        .collect();
    let col = |name: &'static str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(ReportError::Column(name))
    };
    let (user, arn, pw) = (col("user")?, col("arn")?, col("password_enabled")?);
    let slots = [
        (
            col("access_key_1_active")?,
            col("access_key_1_last_rotated")?,
            col("access_key_1_last_used_date")?,
        ),
        (
            col("access_key_2_active")?,
            col("access_key_2_last_rotated")?,
            col("access_key_2_last_used_date")?,
        ),
    ];
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != header.len() {
            return Err(ReportError::Width(i + 2, f.len(), header.len()));
        }
        let slot = |(a, r, u): (usize, usize, usize)| (f[a] == "true", date(f[r]), date(f[u]));
        rows.push(ReportRow {
            user: f[user].into(),
            arn: f[arn].into(),
            password_enabled: f[pw] == "true",
            keys: [slot(slots[0]), slot(slots[1])],
        });
    }
    Ok(rows)
}

/// What is wrong with one key.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct KeyFinding {
    pub user: String,
    pub arn: String,
    /// 1 or 2.
    pub slot: u8,
    pub severity: &'static str,
    pub problems: Vec<String>,
    /// Active and unused for the window: deactivating it is safe by the evidence.
    pub deactivate: bool,
    pub last_used: Option<String>,
    /// When the key in this slot was created or last rotated (ms): how `--apply` finds the key
    /// id, since the report names slots, not keys.
    #[serde(skip)]
    pub rotated_ms: Option<i64>,
}

/// Audit every active key. `cloudtrail_use`: last use per user ARN seen in CloudTrail for
/// AKIA keys (the report's slot cannot be told from CloudTrail alone, so it vouches for the
/// user's keys as a whole only when the report has no last-use date of its own).
pub fn audit(
    rows: &[ReportRow],
    cloudtrail_use: &BTreeMap<String, i64>,
    now_ms: i64,
    max_age_days: i64,
    unused_days: i64,
) -> Vec<KeyFinding> {
    let day = 86_400_000;
    let mut out = Vec::new();
    for r in rows {
        for (i, (active, rotated, used)) in r.keys.iter().enumerate() {
            if !active {
                continue;
            }
            let root = r.user == "<root_account>";
            // The later of the report's date and CloudTrail's (an old report must not make a key
            // that CloudTrail shows in use look unused).
            let last_used = match (*used, cloudtrail_use.get(&r.arn).copied()) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let mut problems = Vec::new();
            if root {
                problems
                    .push("the root user has an access key: delete it and use roles".to_owned());
            }
            if rotated.is_some_and(|t| now_ms - t > max_age_days * day) {
                problems.push(format!("older than {max_age_days} days"));
            }
            // Unused needs a known key age: without a rotation date nothing shows the key is not new.
            let unused = rotated.is_some_and(|t| now_ms - t > unused_days * day)
                && last_used.is_none_or(|t| now_ms - t > unused_days * day);
            if unused {
                problems.push(match last_used {
                    Some(_) => format!("not used for {unused_days} days"),
                    None => "never used".to_owned(),
                });
            }
            if r.password_enabled && !root {
                problems.push(
                    "the user also signs in to the console: one identity, two kinds of credential"
                        .to_owned(),
                );
            }
            if problems.is_empty() {
                continue;
            }
            out.push(KeyFinding {
                user: r.user.clone(),
                arn: r.arn.clone(),
                slot: i as u8 + 1,
                severity: if root {
                    "critical"
                } else if unused {
                    "high"
                } else {
                    "medium"
                },
                problems,
                // Root keys are reported, never touched automatically: that is a human decision.
                deactivate: unused && !root,
                last_used: last_used.map(|t| credwarden_core::EventTime(t).to_string()),
                rotated_ms: *rotated,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_report_sample() {
        let csv = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/corpora/iam/credential-report.cloudmapper-demo.csv"
        ))
        .unwrap();
        let rows = parse_report(&csv).unwrap();
        assert_eq!(rows.len(), 3);
        let now = iam::condition::parse_date("2019-06-01T00:00:00Z").unwrap();
        let f = audit(&rows, &BTreeMap::new(), now, 90, 90);
        let root = f.iter().find(|k| k.user == "<root_account>").unwrap();
        assert_eq!(root.severity, "critical");
        assert!(
            !root.deactivate,
            "root keys are never deactivated automatically"
        );
        // auditor_tmp: created three weeks earlier, never used — young, so not yet "unused".
        assert!(f.iter().all(|k| k.user != "auditor_tmp"), "{f:?}");
        // user: key 1 rotated 2019-05-07 never used (young), key 2 used a year ago; console too.
        let k2 = f.iter().find(|k| k.user == "user" && k.slot == 2).unwrap();
        assert!(
            k2.deactivate
                && k2
                    .problems
                    .iter()
                    .any(|p| p.contains("not used for 90 days"))
                && k2.problems.iter().any(|p| p.contains("console"))
        );
        let k1 = f.iter().find(|k| k.user == "user" && k.slot == 1).unwrap();
        assert!(!k1.deactivate, "{k1:?}");
        // CloudTrail use vouches for a key the report has no date for.
        let later = iam::condition::parse_date("2019-09-01T00:00:00Z").unwrap();
        let mut seen = BTreeMap::new();
        seen.insert(
            "arn:aws:iam::123456789012:user/auditor_tmp".to_owned(),
            later - 86_400_000,
        );
        assert!(audit(&rows, &seen, later, 90, 90)
            .iter()
            .all(|k| k.user != "auditor_tmp" || !k.deactivate));
        assert!(audit(&rows, &BTreeMap::new(), later, 90, 90)
            .iter()
            .any(|k| k.user == "auditor_tmp" && k.deactivate));
    }

    #[test]
    fn malformed_reports_are_refused_clearly() {
        assert_eq!(parse_report(""), Err(ReportError::Empty));
        assert_eq!(
            parse_report("user,arn\nx,y"),
            Err(ReportError::Column("password_enabled"))
        );
        let csv = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/corpora/iam/credential-report.cloudmapper-demo.csv"
        ))
        .unwrap();
        let broken = format!("{csv}\nshort,line\n");
        assert!(matches!(
            parse_report(&broken),
            Err(ReportError::Width(5, 2, 22))
        ));
    }
}
