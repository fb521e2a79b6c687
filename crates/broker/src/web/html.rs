//! HTML output: one escape function for every string that did not come from this file, and
//! the page frame (landmarks, navigation, the sign-out form).

/// Escape text for HTML element content and quoted attribute values. Every user-supplied or
/// stored string (names, reasons, comments, ARNs, messages) goes through this before it is
/// written into a page.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The stylesheet, served at `/ui.css`: the Content-Security-Policy allows no inline style.
pub const CSS: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f7f9}\
header{background:#1f3a5f;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.5rem;align-items:center}\
header a{color:#fff}header form{margin-left:auto}\
nav ul{list-style:none;display:flex;gap:1rem;margin:0;padding:0}\
main{padding:1rem 1.2rem;max-width:70rem}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{border:1px solid #ccd;padding:.35rem .5rem;text-align:left;vertical-align:top}\
pre{background:#eef;padding:.3rem;margin:0;white-space:pre-wrap;word-break:break-all}\
label{display:block;margin:.5rem 0 .2rem}\
input,select,textarea{font:inherit}\
button{font:inherit;padding:.25rem .8rem;cursor:pointer}\
:focus-visible{outline:3px solid #e08a00;outline-offset:2px}\
.notice{background:#e6f4ea;border:1px solid #8c8;padding:.5rem}\
.error{background:#fdecea;border:1px solid #d88;padding:.5rem}\
";

/// Who is signed in, for the page header.
pub struct Viewer<'a> {
    pub user: &'a str,
    pub csrf: &'a str,
    pub admin: bool,
}

/// A whole page: `title` and `body` (already HTML; every dynamic part escaped by its
/// maker). Without a viewer the header has no navigation.
pub fn page(title: &str, viewer: Option<&Viewer>, body: &str) -> String {
    let header = match viewer {
        Some(v) => {
            let audit = if v.admin {
                r#"<li><a href="/audit">Audit</a></li><li><a href="/findings">Findings</a></li>"#
            } else {
                ""
            };
            format!(
                r#"<nav aria-label="Main"><ul><li><a href="/">My roles</a></li><li><a href="/request">Request access</a></li><li><a href="/approvals">Approvals</a></li>{audit}</ul></nav>
<form method="post" action="/auth/logout"><input type="hidden" name="csrf" value="{csrf}"><span>{user}</span> <button type="submit">Sign out</button></form>"#,
                csrf = escape(v.csrf),
                user = escape(v.user),
            )
        }
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · credwarden</title><link rel="stylesheet" href="/ui.css"></head>
<body><header><strong>credwarden</strong>
{header}</header>
<main id="main"><h1>{title}</h1>
{body}</main></body></html>
"#,
        title = escape(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(
            escape(r#"<script>alert(1)</script>"#),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            escape(r#"a" onmouseover='x' & b"#),
            "a&quot; onmouseover=&#39;x&#39; &amp; b"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
        // Escaping twice shows the first escape, not markup: nothing is unescaped.
        assert_eq!(escape("&lt;"), "&amp;lt;");
    }

    #[test]
    fn the_page_escapes_its_title_and_viewer() {
        let v = Viewer {
            user: "<b>mallory</b>",
            csrf: "t\"x",
            admin: false,
        };
        let p = page("<i>x</i>", Some(&v), "");
        assert!(!p.contains("<b>mallory") && p.contains("&lt;b&gt;mallory"));
        assert!(!p.contains("<i>x") && p.contains("value=\"t&quot;x\""));
        assert!(!p.contains("/audit"), "the audit link is for admins");
    }
}
