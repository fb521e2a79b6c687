//! Notify routes: which webhook each finding goes to. A route has a name, a URL, a body format
//! and matchers (account owners, account ids, detectors, a minimum severity), all optional
//! and all required to match; a route without matchers takes every finding. A finding goes to
//! every route that matches it, each through its own queue in the state file's spool
//! (`destination` = the route's name), so one dead or slow endpoint never holds up another.
//!
//! A webhook URL is a secret (a Slack incoming-webhook URL is its own credential): routes are
//! named in messages, dead letters and errors, the URL never is — at most its host.

use std::fmt;

use credwarden_core::{Finding, Severity};
use serde::Deserialize;

use crate::webhook::WebhookOptions;

/// Why a route cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(
        "notify route name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-' (the name \
         stands for the URL in messages, dead letters and `webhook resend --route`)"
    )]
    BadName(String),
    #[error(
        "two notify routes are named {0:?}: route names must be unique (each names its own \
         queue in the spool and its dead letters)"
    )]
    Duplicate(String),
    /// The URL cannot carry findings safely. `host` is the most of the URL ever shown.
    #[error("notify route {route}: {why}{}", host_note(host))]
    BadUrl {
        route: String,
        why: &'static str,
        host: Option<String>,
    },
}

fn host_note(host: &Option<String>) -> String {
    host.as_ref()
        .map(|h| format!(" (host {h})"))
        .unwrap_or_default()
}

/// What a route matches on. Every list that is not empty must match, and so must
/// `min_severity` when set; no matchers at all match every finding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteFilter {
    /// The finding's `account_owner` (from the account registry), compared case-insensitively.
    pub owners: Vec<String>,
    /// The finding's account id.
    pub accounts: Vec<String>,
    /// The finding's detector name.
    pub detectors: Vec<String>,
    pub min_severity: Option<Severity>,
}

/// What routing reads from a finding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct FindingFacts {
    #[serde(default)]
    pub detector: String,
    #[serde(default, deserialize_with = "severity_or_none")]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub account_owner: Option<String>,
}

/// Severity as findings write it; anything else is no severity (matches no `min_severity`).
pub fn parse_severity(text: &str) -> Option<Severity> {
    [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ]
    .into_iter()
    .find(|s| s.as_str().eq_ignore_ascii_case(text))
}

fn severity_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Severity>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.as_deref().and_then(parse_severity))
}

impl FindingFacts {
    pub fn of(f: &Finding) -> FindingFacts {
        FindingFacts {
            detector: f.detector.to_owned(),
            severity: Some(f.severity),
            account: f.account.clone(),
            account_owner: f.account_owner.clone(),
        }
    }

    /// The facts of a finding given as its JSON line. A line that is not a finding has none:
    /// only routes without matchers take it (better posted to a catch-all than lost).
    pub fn of_json(json: &str) -> FindingFacts {
        serde_json::from_str(json).unwrap_or_default()
    }
}

impl RouteFilter {
    pub fn is_catch_all(&self) -> bool {
        *self == RouteFilter::default()
    }

    pub fn matches(&self, f: &FindingFacts) -> bool {
        let owner = self.owners.is_empty()
            || f.account_owner
                .as_deref()
                .is_some_and(|o| self.owners.iter().any(|w| w.eq_ignore_ascii_case(o)));
        let account = self.accounts.is_empty()
            || f.account
                .as_deref()
                .is_some_and(|a| self.accounts.iter().any(|w| w == a));
        let detector = self.detectors.is_empty() || self.detectors.contains(&f.detector);
        let severity = self
            .min_severity
            .is_none_or(|min| f.severity.is_some_and(|s| s >= min));
        owner && account && detector && severity
    }
}

/// One destination: a named webhook and the findings it wants.
#[derive(Clone)]
pub struct Route {
    /// Unique; names the route's queue in the spool and its dead letters.
    pub name: String,
    pub url: String,
    pub options: WebhookOptions,
    pub filter: RouteFilter,
}

/// The URL is left out: it may be a secret.
impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("host", &url_host(&self.url))
            .field("options", &self.options)
            .field("filter", &self.filter)
            .finish()
    }
}

/// The host of `url`, if it parses: the most of a webhook URL ever shown.
pub fn url_host(url: &str) -> Option<String> {
    let parsed = ureq::post(url).request_url().ok()?;
    Some(parsed.host().to_owned()).filter(|h| !h.is_empty())
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a URL may not carry a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsecureUrl {
    /// A user name or password in the URL: it would travel in a header credwarden does not
    /// mean to send.
    Userinfo,
    NoHost,
    /// `http://` to anything but this machine.
    PlainHttp,
    /// Neither `https://` nor `http://`.
    Scheme,
}

impl InsecureUrl {
    pub fn why(self) -> &'static str {
        match self {
            InsecureUrl::Userinfo => "a user name or password in the url is refused",
            InsecureUrl::NoHost => "the url has no host",
            InsecureUrl::PlainHttp => {
                "plain http:// is only allowed to a loopback address or localhost; use https://"
            }
            InsecureUrl::Scheme => "the url must be https:// (or http:// to loopback)",
        }
    }
}

/// Whether a secret (findings that name stolen credentials, a bearer token, a URL that holds
/// one) may travel to `u`: TLS, except to this machine. `http://` only to a loopback IP
/// literal or exactly `localhost`, decided on the parsed URL (so `http://localhost@10.0.0.1/`
/// and `http://127.0.0.1.evil.example/` are refused); user information never. The one rule
/// for webhooks and for the broker's clients.
pub fn secret_may_travel(u: &url::Url) -> Result<(), InsecureUrl> {
    if !u.username().is_empty() || u.password().is_some() {
        return Err(InsecureUrl::Userinfo);
    }
    let Some(host) = u.host() else {
        return Err(InsecureUrl::NoHost);
    };
    let loopback = match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(d) => d == "localhost",
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(InsecureUrl::PlainHttp),
        _ => Err(InsecureUrl::Scheme),
    }
}

/// A route's URL, checked by [`secret_may_travel`].
pub fn check_url(route: &str, url: &str) -> Result<(), RouteError> {
    let bad = |why, host| RouteError::BadUrl {
        route: route.to_owned(),
        why,
        host,
    };
    // ureq parses with the `url` crate, as it will when posting: the URL checked is the URL
    // used.
    let parsed = ureq::post(url)
        .request_url()
        .map_err(|_| bad("the url is not a valid http(s) URL", None))?;
    let u = parsed.as_url();
    secret_may_travel(u).map_err(|e| bad(e.why(), u.host_str().map(str::to_owned)))
}

impl Route {
    /// A route's own checks: its name and its URL.
    pub fn check(&self) -> Result<(), RouteError> {
        if !valid_name(&self.name) {
            return Err(RouteError::BadName(self.name.clone()));
        }
        check_url(&self.name, &self.url)
    }
}

/// Check every route, and that no two share a name.
pub fn check_routes(routes: &[Route]) -> Result<(), RouteError> {
    let mut seen = std::collections::HashSet::new();
    for r in routes {
        r.check()?;
        if !seen.insert(r.name.as_str()) {
            return Err(RouteError::Duplicate(r.name.clone()));
        }
    }
    Ok(())
}

/// The routes' matchers, without their URLs: what decides the destinations of a finding where
/// it is spooled.
#[derive(Clone, Debug, Default)]
pub struct Router {
    routes: Vec<(String, RouteFilter)>,
}

impl Router {
    pub fn new(routes: &[Route]) -> Router {
        Router {
            routes: routes
                .iter()
                .map(|r| (r.name.clone(), r.filter.clone()))
                .collect(),
        }
    }

    /// The names of the routes `f` goes to, in the routes' order.
    pub fn destinations(&self, f: &FindingFacts) -> Vec<&str> {
        self.routes
            .iter()
            .filter(|(_, filter)| filter.matches(f))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The destinations of a finding given as its JSON line.
    pub fn destinations_of_json(&self, json: &str) -> Vec<&str> {
        if self.routes.is_empty() {
            return Vec::new();
        }
        self.destinations(&FindingFacts::of_json(json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, url: &str, filter: RouteFilter) -> Route {
        Route {
            name: name.into(),
            url: url.into(),
            options: WebhookOptions::default(),
            filter,
        }
    }

    #[test]
    fn findings_go_to_every_matching_route() {
        let payments = RouteFilter {
            owners: vec!["Payments-Team".into()],
            ..Default::default()
        };
        let canaries = RouteFilter {
            detectors: vec!["canary-resource".into()],
            min_severity: Some(Severity::High),
            ..Default::default()
        };
        let prod = RouteFilter {
            accounts: vec!["111122223333".into()],
            owners: vec!["payments-team".into()],
            ..Default::default()
        };
        let router = Router::new(&[
            route("payments", "https://a.example/x", payments),
            route("canaries", "https://b.example/x", canaries),
            route("prod", "https://c.example/x", prod),
            route("all", "https://d.example/x", RouteFilter::default()),
        ]);
        let json = |detector: &str, severity: &str, account: &str, owner: Option<&str>| {
            serde_json::json!({"id": "x", "detector": detector, "severity": severity,
                "account": account, "account_owner": owner})
            .to_string()
        };
        assert_eq!(
            router.destinations_of_json(&json(
                "static-key-use",
                "medium",
                "111122223333",
                Some("payments-team")
            )),
            ["payments", "prod", "all"],
            "owners compare case-insensitively; all matchers of a route must match"
        );
        assert_eq!(
            router.destinations_of_json(&json(
                "static-key-use",
                "low",
                "444455556666",
                Some("payments-team")
            )),
            ["payments", "all"]
        );
        assert_eq!(
            router.destinations_of_json(&json("canary-resource", "critical", "1", None)),
            ["canaries", "all"]
        );
        assert_eq!(
            router.destinations_of_json(&json("canary-resource", "medium", "1", None)),
            ["all"],
            "below the minimum severity"
        );
        assert_eq!(router.destinations_of_json("not json"), ["all"]);
        assert!(Router::default().destinations_of_json("{}").is_empty());
    }

    #[test]
    fn urls_must_be_tls_or_loopback_and_are_never_shown() {
        for good in [
            "https://hooks.slack.com/services/T000/B000/secretsecret",
            "http://127.0.0.1:8080/hook",
            "http://127.8.9.10/",
            "http://[::1]:9/x",
            "http://localhost:9/x",
            "http://LOCALHOST/",
        ] {
            assert!(check_url("r", good).is_ok(), "{good}");
        }
        for bad in [
            "http://hooks.example.com/secretsecret",
            "http://localhost@10.255.255.1/secretsecret",
            "http://127.0.0.1.evil.example/secretsecret",
            "http://[::ffff:10.0.0.1]/secretsecret",
            "https://user:secretsecret@hooks.example.com/",
            "ftp://127.0.0.1/secretsecret",
            "hooks.example.com/secretsecret",
            "not a url secretsecret",
        ] {
            let e = check_url("payments", bad).expect_err(bad).to_string();
            assert!(e.starts_with("notify route payments: "), "{e}");
            assert!(!e.contains("secretsecret"), "the URL is shown: {e}");
        }
        let e = check_url("payments", "http://hooks.example.com/T/B/secretsecret").unwrap_err();
        assert!(e.to_string().ends_with("(host hooks.example.com)"), "{e}");
        let r = route(
            "ops",
            "https://hooks.example.com/secretsecret",
            RouteFilter::default(),
        );
        assert!(!format!("{r:?}").contains("secretsecret"));
    }

    #[test]
    fn names_are_plain_and_unique() {
        let ok = route(
            "payments-team.alerts_1",
            "https://a.example/",
            RouteFilter::default(),
        );
        assert!(check_routes(std::slice::from_ref(&ok)).is_ok());
        let e = check_routes(&[ok.clone(), ok]).unwrap_err();
        assert!(matches!(e, RouteError::Duplicate(ref n) if n == "payments-team.alerts_1"));
        for bad in ["", "two words", "a/b", &"x".repeat(65)] {
            let e = route(bad, "https://a.example/", RouteFilter::default())
                .check()
                .unwrap_err();
            assert!(matches!(e, RouteError::BadName(_)), "{bad}");
        }
    }
}
