//! The web UI over HTTP, without a browser: sign-in through the local OIDC provider
//! (authorization code + PKCE), the session cookie's attributes, the security headers, CSRF
//! and Origin refusals, escaping of a hostile reason, `state` and `nonce` mismatches in the
//! callback, redirects to sign-in, and request → approval → console on moto's STS with the
//! local federation endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use testkit::federation::{moto_caller_arn, FederationServer};
use testkit::oidc::{OidcOptions, OidcProvider};

mod common;

const CLIENT: &str = "credwarden-web";
const ROLE: &str = "arn:aws:iam::123456789012:role/payments-api";

/// A broker with the UI, its OIDC provider and its temporary directory.
struct Ui {
    base: String,
    idp: OidcProvider,
    _dir: tempfile::TempDir,
}

/// Serve the broker with `[web]` on a loopback port chosen before the configuration is
/// written (the redirect URL names it). `aws` is the STS endpoint, `federation` the
/// console's.
fn ui(aws: &str, federation: &str) -> Ui {
    common::aws_env();
    let idp = OidcProvider::start(OidcOptions::new(CLIENT, "alice", &["dev"]));
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // The account registry names the payments account; the broker's findings go to a file
    // the admins' findings page reads.
    let registry = dir.path().join("registry.sqlite");
    store::Store::open(&registry)
        .unwrap()
        .accounts_replace(&[store::Account {
            id: "123456789012".into(),
            name: "payments-prod".into(),
            email: None,
            status: Some("ACTIVE".into()),
            ou: None,
            owner: None,
            environment: None,
            tags: "{}".into(),
        }])
        .unwrap();
    let config = format!(
        r#"
audit = "{audit}"
registry = "{registry}"
findings = "{findings}"
admin_groups = ["security"]
read_role_tags = false
membership_max_seconds = 86400
[[approvers]]
group = "payments"
approvers = ["payments-leads"]
[[roles]]
arn = "{ROLE}"
groups = ["payments"]
[[roles]]
arn = "arn:aws:iam::210987654321:role/search-admin"
groups = ["search"]
[auth]
mode = "jwt"
jwks_url = "{issuer}/jwks"
issuer = "{issuer}"
audience = "{CLIENT}"
[[networks]]
name = "loopback-lab"
clients = ["127.0.0.0/8"]
egress = ["198.51.100.0/24"]
[aws]
endpoint_url = "{aws}"
region = "us-east-1"
[console]
federation_url = "{federation}"
[web]
redirect_url = "{base}/auth/callback"
session_seconds = 3600
"#,
        audit = dir.path().join("audit.sqlite").display(),
        registry = registry.display(),
        findings = dir.path().join("findings.jsonl").display(),
        issuer = idp.issuer,
    );
    common::serve_on(broker::config::parse(&config).unwrap(), listener);
    Ui {
        base,
        idp,
        _dir: dir,
    }
}

/// One answer: status, headers (lowercase names, every value), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn location(&self) -> String {
        self.header("location").unwrap_or("").to_owned()
    }
}

/// A browser that follows nothing by itself and keeps the broker's cookies.
struct Browser {
    base: String,
    cookies: BTreeMap<String, String>,
    agent: ureq::Agent,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            base: base.to_owned(),
            cookies: BTreeMap::new(),
            agent: ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(30))
                .build(),
        }
    }

    fn send(&mut self, req: ureq::Request, form: Option<&[(&str, &str)]>) -> Answer {
        let to_broker = req.url().starts_with(&self.base);
        let mut req = req;
        if to_broker && !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.set("cookie", &jar.join("; "));
        }
        let resp = match form {
            Some(f) => req.send_form(f),
            None => req.call(),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        let mut headers = Vec::new();
        for name in resp.headers_names() {
            for v in resp.all(&name) {
                headers.push((name.to_lowercase(), v.to_owned()));
            }
        }
        if to_broker {
            for c in resp.all("set-cookie") {
                let pair = c.split(';').next().unwrap();
                let (k, v) = pair.split_once('=').unwrap();
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        let status = resp.status();
        let body = resp.into_string().unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn get(&mut self, path: &str) -> Answer {
        let req = self.agent.get(&self.url(path));
        self.send(req, None)
    }

    /// A form post as a browser on the broker's own page makes it.
    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let origin = self.base.clone();
        self.post_with(path, form, &[("origin", &origin)])
    }

    fn post_with(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        let mut req = self.agent.post(&self.url(path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        self.send(req, Some(form))
    }

    /// `/auth/login` → the provider's authorization endpoint: its URL.
    fn start_sign_in(&mut self) -> String {
        let a = self.get("/auth/login");
        assert_eq!(a.status, 303, "{}", a.body);
        a.location()
    }

    /// The provider signs its user in and sends the browser back: the callback URL.
    fn authorize(&mut self, url: &str) -> String {
        let a = self.get(url);
        assert_eq!(a.status, 302, "{}", a.body);
        a.location()
    }

    /// A whole sign-in; the callback's answer.
    fn sign_in(&mut self) -> Answer {
        let at_idp = self.start_sign_in();
        let back = self.authorize(&at_idp);
        let a = self.get(&back);
        assert_eq!((a.status, a.location().as_str()), (303, "/"), "{}", a.body);
        a
    }

    /// The CSRF token in a page's forms.
    fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path);
        let at = page.body.find(r#"name="csrf" value=""#).expect("a form") + 19;
        page.body[at..].split('"').next().unwrap().to_owned()
    }
}

fn sign_in_as(ui: &Ui, user: &str, groups: &[&str]) -> Browser {
    ui.idp.set_options(|o| {
        o.user = user.into();
        o.groups = groups.iter().map(|g| g.to_string()).collect();
    });
    let mut b = Browser::new(&ui.base);
    b.sign_in();
    b
}

/// A query parameter of a URL.
fn param(url: &str, name: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    let v = u.query_pairs().find(|(k, _)| k == name).unwrap().1;
    v.into_owned()
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    u.to_string()
}

const NO_AWS: &str = "http://127.0.0.1:9";
const NO_FEDERATION: &str = "http://127.0.0.1:9/federation";

#[test]
fn sign_in_sets_a_safe_cookie_and_pages_carry_the_security_headers() {
    let ui = ui(NO_AWS, NO_FEDERATION);
    let mut b = Browser::new(&ui.base);
    // Unauthenticated: every page sends the browser to sign in.
    for path in ["/", "/request", "/approvals", "/audit", "/?q=x"] {
        let a = b.get(path);
        assert_eq!(
            (a.status, a.location().as_str()),
            (303, "/auth/login"),
            "{path}"
        );
    }
    // The provider is asked for a code with PKCE S256, a state and a nonce.
    let at_idp = b.start_sign_in();
    assert!(at_idp.starts_with(&format!("{}/authorize?", ui.idp.issuer)));
    assert_eq!(param(&at_idp, "code_challenge_method"), "S256");
    assert_eq!(
        param(&at_idp, "redirect_uri"),
        format!("{}/auth/callback", ui.base)
    );
    assert!(param(&at_idp, "state").len() >= 32 && param(&at_idp, "nonce").len() >= 32);
    let back = b.authorize(&at_idp);
    let a = b.get(&back);
    assert_eq!((a.status, a.location().as_str()), (303, "/"), "{}", a.body);
    let session = a
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("credwarden_session=") && !c.starts_with("credwarden_session=;"))
        .expect("a session cookie")
        .to_owned();
    let attrs: Vec<&str> = session.split("; ").collect();
    for want in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
        assert!(attrs.contains(&want), "{want} in {session}");
    }
    // Loopback http: a Secure cookie would never come back.
    assert!(!attrs.contains(&"Secure"), "{session}");
    assert!(
        session.split(';').next().unwrap().len() > 40,
        "a long random id"
    );

    let page = b.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-security-policy"),
        Some("default-src 'self'; frame-ancestors 'none'")
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("alice"), "{}", page.body);
    assert!(!page.body.contains("<script"), "no script on any page");
    // alice (group dev) may use no role yet.
    assert!(
        page.body.contains("You may use no role yet"),
        "{}",
        page.body
    );
    // Not an admin: no audit.
    assert_eq!(b.get("/audit").status, 403);
    assert_eq!(b.get("/findings").status, 403);

    // An admin sees the audit page, filtered by user.
    let mut sam = sign_in_as(&ui, "sam", &["security", "payments"]);
    let roles = sam.get("/?q=payments");
    assert!(
        roles.body.contains(ROLE) && !roles.body.contains("search-admin"),
        "{}",
        roles.body
    );
    assert!(roles
        .body
        .contains("credential_process = credwarden creds payments-api --process"));
    let all = sam.get("/");
    assert!(
        all.body.contains(ROLE) && !all.body.contains("search-admin"),
        "sam has no search group"
    );
    // Accounts by name from the registry, and the filter finds roles by account name.
    assert!(
        all.body.contains("payments-prod (123456789012)"),
        "{}",
        all.body
    );
    assert!(sam.get("/?q=PAYMENTS-PROD").body.contains(ROLE));
    let audit = sam.get("/audit?user=alice");
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(audit.body.contains(r#"value="alice""#));
    let findings = sam.get("/findings?detector=access-request");
    assert_eq!(findings.status, 200, "{}", findings.body);
    assert!(findings.body.contains(r#"value="access-request""#));

    // The settings: Secure cookies whenever the UI is https.
    let https = broker::config::parse(&format!(
        "audit = \"x\"\nnetworks = []\n[auth]\nmode = \"jwt\"\njwks_file = \"j\"\nissuer = \"https://idp\"\naudience = \"{CLIENT}\"\n[web]\nredirect_url = \"https://broker.example.com/auth/callback\"\n"
    ))
    .unwrap();
    let s = broker::web::settings(&https).unwrap().unwrap();
    assert!(s.secure);
    assert_eq!(s.origin, "https://broker.example.com");
    for (bad, why) in [
        ("http://broker.example.com/auth/callback", "https"),
        ("https://broker.example.com/elsewhere", "/auth/callback"),
    ] {
        let mut c = https.clone();
        c.web.as_mut().unwrap().redirect_url = bad.into();
        let e = broker::web::settings(&c).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    let mut c = https.clone();
    c.web.as_mut().unwrap().client_id = Some("other".into());
    assert!(broker::web::settings(&c)
        .unwrap_err()
        .to_string()
        .contains("audience"));
}

#[test]
fn the_callback_checks_state_nonce_and_the_browser_that_started() {
    let ui = ui(NO_AWS, NO_FEDERATION);
    let mut b = Browser::new(&ui.base);

    // A state that is not the one sent: refused, and the sign-in is spent.
    let back = {
        let at_idp = b.start_sign_in();
        b.authorize(&at_idp)
    };
    let forged = with_param(&back, "state", "forged-state-forged-state-forged");
    let a = b.get(&forged);
    assert_eq!(a.status, 400);
    assert!(a.body.contains("state does not match"), "{}", a.body);
    assert!(!a
        .all("set-cookie")
        .iter()
        .any(|c| c.starts_with("credwarden_session=")));
    let a = b.get(&back);
    assert_eq!(a.status, 400, "a sign-in is used once");
    assert!(a.body.contains("unknown or expired"), "{}", a.body);

    // The callback in another browser (an attacker's code and state planted on a victim):
    // no login cookie, no session.
    let at_idp = b.start_sign_in();
    let back = b.authorize(&at_idp);
    let mut victim = Browser::new(&ui.base);
    assert_eq!(victim.get(&back).status, 400);
    assert_eq!(victim.get("/").status, 303);

    // An ID token whose nonce is not the one sent: refused.
    let mut c = Browser::new(&ui.base);
    let at_idp = c.start_sign_in();
    let at_idp = with_param(&at_idp, "nonce", "another-nonce-another-nonce-another");
    let back = c.authorize(&at_idp);
    let a = c.get(&back);
    assert_eq!(a.status, 400);
    assert!(a.body.contains("nonce does not match"), "{}", a.body);
    assert_eq!(c.get("/").status, 303);

    // The provider's error comes back escaped, and no session.
    let mut d = Browser::new(&ui.base);
    d.start_sign_in();
    let a = d.get("/auth/callback?error=%3Cb%3Eaccess_denied%3C%2Fb%3E&state=x");
    assert_eq!(a.status, 400);
    assert!(a.body.contains("&lt;b&gt;access_denied") && !a.body.contains("<b>access"));

    // And a good one works after all that.
    b.sign_in();
    assert_eq!(b.get("/").status, 200);

    // Sign-ins are audited like credentials: the good one granted, the one with another
    // browser's nonce refused (the token verified, so the user is known); the forged state
    // and the provider's error never reached a verified user.
    let mut sam = sign_in_as(&ui, "sam", &["security"]);
    let audit = sam.get("/audit?user=alice");
    assert_eq!(audit.status, 200, "{}", audit.body);
    let rows: Vec<&str> = audit
        .body
        .lines()
        .filter(|l| l.starts_with("<tr><td>"))
        .collect();
    let signed_in = |decision: &str, reason: &str| {
        rows.iter()
            .filter(|r| {
                r.contains(&format!(
                    "<td>{decision}</td><td>{reason}</td><td>127.0.0.1</td>"
                ))
            })
            .count()
    };
    assert_eq!(signed_in("granted", "web sign-in"), 1, "{rows:#?}");
    assert_eq!(
        signed_in("refused", "web sign-in refused: bad-nonce"),
        1,
        "{rows:#?}"
    );
    assert_eq!(rows.len(), 2, "{rows:#?}");
}

#[test]
fn forms_need_the_session_csrf_token_and_this_origin() {
    let ui = ui(NO_AWS, NO_FEDERATION);
    let mut b = sign_in_as(&ui, "alice", &["dev"]);
    let token = b.csrf("/request");
    let base = ui.base.clone();
    let form = |t: &str| -> Vec<(String, String)> {
        [
            ("csrf", t),
            ("group", "payments"),
            ("reason", "on call"),
            ("duration", "3600"),
        ]
        .iter()
        .filter(|(k, v)| *k != "csrf" || !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let post = |b: &mut Browser, fields: &[(String, String)], headers: &[(&str, &str)]| {
        let f: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        b.post_with("/request", &f, headers)
    };
    let same = [("origin", base.as_str())];
    for (fields, headers, what) in [
        (form(""), &same[..], "missing token"),
        (form("not-the-token"), &same[..], "wrong token"),
        (
            form(&token),
            &[("origin", "http://evil.example")][..],
            "foreign origin",
        ),
        (
            form(&token),
            &[("sec-fetch-site", "cross-site")][..],
            "cross-site fetch",
        ),
    ] {
        let a = post(&mut b, &fields, headers);
        assert_eq!(a.status, 403, "{what}: {}", a.body);
    }
    // Nothing was requested.
    assert!(!b.get("/request").body.contains("Your requests"));
    // Another session's token is not this one's.
    let mut other = sign_in_as(&ui, "bob", &["dev"]);
    let theirs = other.csrf("/request");
    assert_ne!(theirs, token);
    assert_eq!(post(&mut b, &form(&theirs), &same).status, 403);

    // The right token from this origin: the request is made. (Our pages send no referrer,
    // so browsers say `Origin: null` with `Sec-Fetch-Site: same-origin` on their forms.)
    let browser = [("origin", "null"), ("sec-fetch-site", "same-origin")];
    let a = post(&mut b, &form(&token), &browser);
    assert_eq!(
        (a.status, a.location().as_str()),
        (303, "/request?sent=1"),
        "{}",
        a.body
    );
    let page = b.get("/request?sent=1");
    assert!(page.body.contains("Your requests") && page.body.contains("on call"));

    // Logout is a form too; afterwards the cookie's id is no session.
    assert_eq!(b.post("/auth/logout", &[("csrf", "nope")]).status, 403);
    let old = b.cookies.get("credwarden_session").cloned().unwrap();
    let a = b.post("/auth/logout", &[("csrf", &token)]);
    assert_eq!(a.status, 200);
    assert!(a
        .all("set-cookie")
        .iter()
        .any(|c| c.starts_with("credwarden_session=;") && c.contains("Max-Age=0")));
    b.cookies.insert("credwarden_session".into(), old);
    assert_eq!(b.get("/").status, 303, "a signed-out id is no session");
}

#[test]
fn a_hostile_reason_is_escaped_on_the_approvals_page() {
    let ui = ui(NO_AWS, NO_FEDERATION);
    let mut alice = sign_in_as(&ui, "alice", &["dev"]);
    let t = alice.csrf("/request");
    let hostile = r#"<script>alert(1)</script>"#;
    let a = alice.post(
        "/request",
        &[
            ("csrf", &t),
            ("role", "payments-api"),
            ("reason", hostile),
            ("duration", "3600"),
        ],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let mut carol = sign_in_as(&ui, "carol", &["payments-leads"]);
    let page = carol.get("/approvals");
    assert!(
        page.body.contains("alice asks for payments"),
        "{}",
        page.body
    );
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.body.contains("<script"), "{}", page.body);
    // alice's own request is not hers to decide.
    assert!(alice
        .get("/approvals")
        .body
        .contains("Nothing waits for your decision"));
}

/// moto with the payments role (a recorder in front), and the federation endpoint that
/// takes only moto's sessions of payments-api for alice, as AWS takes only its own.
fn console_world() -> (testkit::Moto, testkit::Recorder, FederationServer) {
    let (moto, recorder) = common::moto_with_role("payments-api");
    let moto_url = moto.url.clone();
    let fed = FederationServer::start(move |s| {
        let arn = moto_caller_arn(&moto_url, s)?;
        if arn.ends_with(":assumed-role/payments-api/alice") {
            Ok(())
        } else {
            Err(format!("not alice's payments-api session: {arn}"))
        }
    });
    (moto, recorder, fed)
}

/// The whole path on moto: alice asks for the role, carol approves with a comment, alice
/// sees the role and gets the console through the federation endpoint that checks the
/// session is moto's for payments-api and alice.
#[test]
fn request_approve_and_open_the_console() {
    let (_moto, recorder, fed) = console_world();
    let ui = ui(&recorder.url, &fed.url);
    let mut alice = sign_in_as(&ui, "alice", &["dev"]);
    let t = alice.csrf("/request");
    let a = alice.post(
        "/request",
        &[
            ("csrf", &t),
            ("group", "payments"),
            ("reason", "incident 42"),
            ("duration", "3600"),
        ],
    );
    assert_eq!(a.status, 303, "{}", a.body);

    let mut carol = sign_in_as(&ui, "carol", &["payments-leads"]);
    let page = carol.get("/approvals");
    let at = page.body.find(r#"action="/approvals/"#).unwrap() + 19;
    let id = page.body[at..].split('"').next().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let t = carol.csrf("/approvals");
    let a = carol.post(
        &format!("/approvals/{id}"),
        &[
            ("csrf", &t),
            ("decision", "approve"),
            ("comment", "ok for the incident"),
        ],
    );
    assert_eq!(
        (a.status, a.location().as_str()),
        (303, "/approvals?done=approved"),
        "{}",
        a.body
    );
    // Decided once.
    let again = carol.post(
        &format!("/approvals/{id}"),
        &[("csrf", &t), ("decision", "deny")],
    );
    assert_eq!(again.status, 409, "{}", again.body);

    // alice's next page has the role (her session's groups are read afresh).
    let roles = alice.get("/");
    assert!(roles.body.contains(ROLE), "{}", roles.body);
    let mine = alice.get("/request");
    assert!(mine.body.contains("approved") && mine.body.contains("ok for the incident"));
    let t = alice.csrf("/");
    let a = alice.post("/console", &[("csrf", &t), ("role", ROLE)]);
    assert_eq!(a.status, 303, "{}", a.body);
    let url = a.location();
    assert!(
        url.starts_with(&format!("{}?Action=login", fed.url)),
        "{url}"
    );
    // The federation endpoint took the session and signs the browser in.
    let signin = alice.get(&url);
    assert_eq!(signin.status, 302);
    assert!(signin
        .location()
        .starts_with("https://console.aws.amazon.com/"));
    assert!(fed
        .requests()
        .iter()
        .any(
            |r| r.query.get("Action").map(String::as_str) == Some("getSigninToken")
                && r.status == 200
        ));
    // Recently used, from the audit.
    assert!(alice.get("/").body.contains("Recently used"));
    // Without the token, no console.
    assert_eq!(alice.post("/console", &[("role", ROLE)]).status, 403);
}

/// Every visible form control on the page has a label.
const LABELLED: &str = "[...document.querySelectorAll('input:not([type=hidden]),select,textarea')].every(e => e.labels && e.labels.length > 0)";

/// Write a screenshot to the test's directory and, when `CREDWARDEN_SCREENSHOTS` names a
/// directory (to refresh `docs/screenshots`), there too.
fn shot(browser: &mut testkit::chromium::Chromium, dir: &std::path::Path, name: &str) {
    let path = dir.join(format!("{name}.png"));
    browser.screenshot(&path);
    assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    if let Ok(keep) = std::env::var("CREDWARDEN_SCREENSHOTS") {
        std::fs::copy(
            &path,
            std::path::Path::new(&keep).join(format!("{name}.png")),
        )
        .unwrap();
    }
}

fn sign_out(browser: &mut testkit::chromium::Chromium) {
    browser.eval("document.querySelector('form[action=\"/auth/logout\"] button').click()");
    browser.wait_for("document.body.innerText.includes('You are signed out')", 20);
}

/// The UI in headless Chromium: alice signs in through the provider, sees no role, asks for
/// the payments group with the keyboard alone; carol approves in her browser session; alice
/// sees the role and opens the console through the federation endpoint; an admin reads the
/// audit. Screenshots of each page are kept in the test's directory.
#[test]
fn in_chromium_sign_in_request_approve_and_open_the_console() {
    let (_moto, recorder, fed) = console_world();
    let ui = ui(&recorder.url, &fed.url);
    let profile = tempfile::tempdir().unwrap();
    let shots = tempfile::tempdir().unwrap();
    let mut c = testkit::chromium::Chromium::start(profile.path(), 1000, 640);

    // Sign-in: / → /auth/login → the provider → /auth/callback → /.
    c.navigate(&format!("{}/", ui.base));
    c.wait_for(
        "document.querySelector('h1') && document.querySelector('h1').textContent === 'My roles'",
        30,
    );
    assert_eq!(c.url(), format!("{}/", ui.base));
    let text = c.text();
    assert!(
        text.contains("alice") && text.contains("You may use no role yet"),
        "{text}"
    );
    assert_eq!(c.eval(LABELLED), json!(true));
    // The session cookie is not readable by page script.
    assert_eq!(c.eval("document.cookie"), json!(""));

    // The request form with the keyboard alone: Tab to each field, type, Enter on the button.
    c.navigate(&format!("{}/request", ui.base));
    c.wait_for("document.getElementById('group')", 20);
    assert_eq!(c.eval(LABELLED), json!(true));
    let mut tabs = 0;
    while c.focused() != "group" {
        c.press("Tab");
        tabs += 1;
        assert!(tabs < 20, "the group field is reachable with Tab");
    }
    c.type_text("payments");
    for want in ["role", "reason"] {
        c.press("Tab");
        assert_eq!(c.focused(), want);
    }
    c.type_text("incident 42: rotate the payments keys");
    c.press("Tab");
    assert_eq!(c.focused(), "duration");
    c.press("Tab");
    assert_eq!(c.focused(), "button");
    assert_eq!(
        c.eval("document.activeElement.textContent"),
        json!("Request access")
    );
    c.press("Enter");
    c.wait_for("location.search === '?sent=1'", 20);
    let text = c.text();
    assert!(
        text.contains("Your request was sent") && text.contains("pending"),
        "{text}"
    );
    shot(&mut c, shots.path(), "request");
    sign_out(&mut c);

    // carol, an approver of payments, approves with a comment.
    ui.idp.set_options(|o| {
        o.user = "carol".into();
        o.groups = vec!["payments-leads".into()];
    });
    c.navigate(&format!("{}/approvals", ui.base));
    c.wait_for(
        "document.querySelector('h1') && document.querySelector('h1').textContent === 'My roles'",
        30,
    );
    c.navigate(&format!("{}/approvals", ui.base));
    c.wait_for(
        "document.body.innerText.includes('alice asks for payments')",
        20,
    );
    assert!(c.text().contains("incident 42: rotate the payments keys"));
    assert_eq!(c.eval(LABELLED), json!(true));
    c.eval("document.querySelector('textarea[name=comment]').focus()");
    c.type_text("ok for the incident");
    shot(&mut c, shots.path(), "approvals");
    c.eval("document.querySelector('button[value=approve]').click()");
    c.wait_for("document.body.innerText.includes('Approved')", 20);
    sign_out(&mut c);

    // alice again: the role is hers now; the console button opens the console.
    ui.idp.set_options(|o| {
        o.user = "alice".into();
        o.groups = vec!["dev".into()];
    });
    c.navigate(&format!("{}/", ui.base));
    c.wait_for("document.body.innerText.includes('payments-api')", 30);
    let text = c.text();
    assert!(
        text.contains("credential_process = credwarden creds payments-api --process"),
        "{text}"
    );
    assert!(text.contains("123456789012"), "{text}");
    shot(&mut c, shots.path(), "roles");
    c.eval("document.querySelector('form[action=\"/console\"] button').click()");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let login = loop {
        let done = fed.requests().into_iter().find(|r| {
            r.query.get("Action").map(String::as_str) == Some("login") && r.status == 302
        });
        if let Some(r) = done {
            break r;
        }
        assert!(
            std::time::Instant::now() < until,
            "the browser reached the federation login: {:?}",
            fed.requests()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(login
        .query
        .get("SigninToken")
        .is_some_and(|t| !t.is_empty()));
    assert!(fed.requests().iter().any(|r| {
        r.query.get("Action").map(String::as_str) == Some("getSigninToken") && r.status == 200
    }));

    // An admin reads the audit, filtered to alice.
    c.navigate(&format!("{}/", ui.base));
    c.wait_for("document.querySelector('h1')", 30);
    sign_out(&mut c);
    ui.idp.set_options(|o| {
        o.user = "sam".into();
        o.groups = vec!["security".into()];
    });
    c.navigate(&format!("{}/", ui.base));
    c.wait_for("document.body.innerText.includes('sam')", 30);
    c.navigate(&format!("{}/audit?user=alice", ui.base));
    c.wait_for("document.querySelector('table')", 20);
    let text = c.text();
    assert!(text.contains("granted") && text.contains(ROLE), "{text}");
    shot(&mut c, shots.path(), "audit");
    for name in ["request", "approvals", "roles", "audit"] {
        assert!(shots.path().join(format!("{name}.png")).exists());
    }
}
