//! The broker's web UI: server-rendered pages, no script, served beside the API when the
//! configuration has a `[web]` section.
//!
//! Sign-in is OIDC authorization code with PKCE (S256) against `[auth] issuer`, whose ID
//! token passes the same verification as API bearer tokens (so the client id is
//! `[auth] audience`); `state` and `nonce` are checked, the sign-in in progress is bound to
//! the browser by a short-lived cookie and used once. A session is a random id in an
//! `HttpOnly`, `SameSite=Lax` cookie (`Secure` unless the redirect URL is loopback `http://`),
//! kept in this process's memory. Every state-changing form carries the session's CSRF token
//! and a cross-site `Origin` is refused. Every page says `Content-Security-Policy:
//! default-src 'self'; frame-ancestors 'none'`, `nosniff`, `no-referrer` and `no-store`.
//!
//! | method, path | what |
//! |---|---|
//! | `GET /` | my roles (`?q=` filters), recently used, console button and CLI snippet per role |
//! | `POST /console` | `role`: the AWS console sign-in URL, as a redirect |
//! | `GET /request`, `POST /request` | ask for a group or a role's group, with reason and duration |
//! | `GET /approvals`, `POST /approvals/{id}` | pending requests the user decides; approve or deny |
//! | `GET /audit?user=` | the audit log (admin groups) |
//! | `GET /auth/login`, `GET /auth/callback`, `POST /auth/logout` | sign-in and out |

pub mod html;
mod pages;
pub mod session;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use url::Url;

use crate::auth::Caller;
use crate::config::BrokerConfig;
use crate::error::ConfigError;
use crate::http::ConnectionState;
use crate::service::{Broker, Refusal};
use html::{escape, page, Viewer};
use session::{cookie, same_secret, Session, Sessions, LOGIN_COOKIE, SESSION_COOKIE};

/// The web UI's settings, checked.
#[derive(Clone, Debug)]
pub struct WebSettings {
    pub issuer: String,
    pub client_id: String,
    pub redirect_url: String,
    /// `scheme://host[:port]` of the redirect URL: the only `Origin` a form may come from.
    pub origin: String,
    /// Cookies are `Secure` (the UI is served over https).
    pub secure: bool,
    pub session_seconds: u64,
}

/// `https://`, or `http://` to a loopback address: where tokens and cookies may travel.
fn safe_url(u: &Url) -> bool {
    match u.scheme() {
        "https" => true,
        "http" => match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

/// Check the `[web]` section against `[auth]`; `None` when the UI is off.
pub fn settings(cfg: &BrokerConfig) -> Result<Option<WebSettings>, ConfigError> {
    let Some(web) = &cfg.web else {
        return Ok(None);
    };
    let bad = |m: &str| Err(ConfigError::Invalid(format!("[web] {m}")));
    let crate::config::AuthConfig::Jwt {
        issuer, audience, ..
    } = &cfg.auth
    else {
        return bad("needs [auth] mode = \"jwt\": the UI signs in with its issuer");
    };
    let client_id = web.client_id.clone().unwrap_or_else(|| audience.clone());
    if &client_id != audience {
        return bad("client_id must equal [auth] audience: the ID token's aud is the client id, and it passes the API's verification");
    }
    let Ok(url) = Url::parse(&web.redirect_url) else {
        return bad("redirect_url is not a URL");
    };
    if !safe_url(&url) || url.path() != "/auth/callback" || url.query().is_some() {
        return bad(
            "redirect_url must be https:// (http:// only to loopback) and end in /auth/callback",
        );
    }
    if web.session_seconds < 60 || web.session_seconds > 7 * 86_400 {
        return bad("session_seconds is 60..=604800");
    }
    Ok(Some(WebSettings {
        issuer: issuer.clone(),
        client_id,
        redirect_url: web.redirect_url.clone(),
        origin: url.origin().ascii_serialization(),
        secure: url.scheme() == "https",
        session_seconds: web.session_seconds,
    }))
}

/// The identity provider's endpoints, from its discovery document.
#[derive(Clone, Debug)]
struct Endpoints {
    authorize: String,
    token: String,
}

pub(crate) struct Web {
    broker: Arc<Broker>,
    settings: WebSettings,
    sessions: Sessions,
    endpoints: Mutex<Option<Endpoints>>,
}

/// The UI's routes (none when `[web]` is unset), every response with the security headers.
pub fn routes(broker: &Arc<Broker>) -> Router<Arc<Broker>> {
    let Ok(Some(settings)) = settings(broker.config()) else {
        return Router::new();
    };
    let web = Arc::new(Web {
        broker: broker.clone(),
        settings,
        sessions: Sessions::default(),
        endpoints: Mutex::new(None),
    });
    Router::new()
        .route("/", get(pages::roles))
        .route("/console", post(pages::console))
        .route("/request", get(pages::request_form).post(pages::request))
        .route("/approvals", get(pages::approvals))
        .route("/approvals/{id}", post(pages::decide))
        .route("/audit", get(pages::audit))
        .route("/findings", get(pages::findings))
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route(
            "/ui.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    html::CSS,
                )
            }),
        )
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        // Pages hold CSRF tokens, role lists and the audit: nothing may keep them.
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A page saying what went wrong; the message is escaped like everything else.
fn problem(status: u16, viewer: Option<&Viewer>, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!(
        r#"<p class="error" role="alert">{}</p><p><a href="/">Back to my roles</a></p>"#,
        escape(message)
    );
    html_response(status, page("Not done", viewer, &body))
}

fn refused(viewer: Option<&Viewer>, r: &Refusal) -> Response {
    problem(r.status, viewer, &r.message)
}

/// A signed-in request: its session and the caller it stands for now.
pub(crate) struct Signed {
    pub id: String,
    pub session: Session,
    pub caller: Caller,
    pub peer: SocketAddr,
    pub admin: bool,
}

impl Signed {
    pub fn viewer(&self) -> Viewer<'_> {
        Viewer {
            user: &self.caller.user,
            csrf: &self.session.csrf,
            admin: self.admin,
        }
    }
}

impl Web {
    fn cookie(&self, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
        let secure = if self.settings.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
        ))
        .expect("cookie values are base64url")
    }

    /// The session of a request, or the response to give instead: a redirect to sign-in.
    pub(crate) async fn signed_in(&self, parts: &Parts) -> Result<Signed, Response> {
        let found = cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|id| self.sessions.get(&id).map(|s| (id, s)));
        let Some((id, session)) = found else {
            return Err(see_other("/auth/login"));
        };
        let Some(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
        else {
            return Err(problem(500, None, "the request has no peer address"));
        };
        if let Some(state) = parts.extensions.get::<ConnectionState>() {
            state.mark_authenticated();
        }
        let caller = self
            .broker
            .session_caller(&session.user, &session.idp_groups)
            .await
            .map_err(|r| refused(None, &r))?;
        let admin = self.broker.is_admin(&caller);
        Ok(Signed {
            id,
            session,
            caller,
            peer,
            admin,
        })
    }

    /// A state-changing form: signed in, from this site, with the session's CSRF token;
    /// its fields.
    pub(crate) async fn form(
        &self,
        req: Request,
    ) -> Result<(Signed, Parts, std::collections::HashMap<String, String>), Response> {
        let (parts, body) = req.into_parts();
        if !self.same_origin(&parts.headers) {
            return Err(problem(403, None, "this form was sent from another site"));
        }
        let signed = self.signed_in(&parts).await?;
        let bytes = crate::http::read_body(&self.broker, &parts, body)
            .await
            .map_err(|r| refused(Some(&signed.viewer()), &r))?;
        let mut fields = std::collections::HashMap::new();
        for (k, v) in url::form_urlencoded::parse(&bytes) {
            // A field given twice is ambiguous: refuse rather than pick one.
            if fields.insert(k.into_owned(), v.into_owned()).is_some() {
                return Err(problem(
                    400,
                    Some(&signed.viewer()),
                    "a form field is repeated",
                ));
            }
        }
        let token_ok = fields
            .get("csrf")
            .is_some_and(|t| same_secret(&signed.session.csrf, t));
        if !token_ok {
            return Err(problem(
                403,
                Some(&signed.viewer()),
                "this form is stale or was not made by this site; reload the page and try again",
            ));
        }
        Ok((signed, parts, fields))
    }

    /// `Origin` (and `Sec-Fetch-Site`, which browsers set on every request) must not name
    /// another site. Our pages say `Referrer-Policy: no-referrer`, so a browser sends
    /// `Origin: null` on their forms: that counts only with `Sec-Fetch-Site: same-origin`
    /// (an attacker's sandboxed frame also says `null`, but its fetch is cross-site). A
    /// request with neither header (not a browser) is left to the CSRF token check.
    fn same_origin(&self, headers: &HeaderMap) -> bool {
        let all = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or(""))
                .collect::<Vec<_>>()
        };
        let site = all("sec-fetch-site");
        let site_ok = match site.as_slice() {
            [] => true,
            [one] => matches!(*one, "same-origin" | "none"),
            _ => false,
        };
        let origin_ok = match all("origin").as_slice() {
            [] => true,
            ["null"] => site.as_slice() == ["same-origin"],
            [one] => *one == self.settings.origin,
            _ => false,
        };
        origin_ok && site_ok
    }

    /// The address to lock credentials to, as for API requests.
    pub(crate) fn client_ip(
        &self,
        signed: &Signed,
        parts: &Parts,
    ) -> Result<std::net::IpAddr, Refusal> {
        crate::http::client_of(&self.broker, parts, signed.peer)
    }

    /// The provider's endpoints, read once from its discovery document, whose `issuer` must
    /// be the configured one (a mixed-up or impostor provider is refused).
    async fn endpoints(&self) -> Result<Endpoints, Refusal> {
        if let Some(e) = self
            .endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(e);
        }
        let issuer = self.settings.issuer.clone();
        let found = tokio::task::spawn_blocking(move || discover(&issuer))
            .await
            .map_err(|e| Refusal::new(500, "internal", e.to_string()))?
            .map_err(|e| {
                eprintln!("broker: web sign-in: discovery failed: {e}");
                Refusal::new(
                    502,
                    "idp-unavailable",
                    "the identity provider cannot be reached",
                )
            })?;
        *self.endpoints.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
        Ok(found)
    }
}

fn http_agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        // The token endpoint's answer is read from where it is, never from a redirect.
        .redirects(0)
        .build()
}

fn discover(issuer: &str) -> Result<Endpoints, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let text = http_agent()
        .get(&url)
        .call()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err("the discovery document names another issuer".into());
    }
    let endpoint = |k: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .filter(|u| Url::parse(u).is_ok_and(|u| safe_url(&u)))
            .map(str::to_owned)
            .ok_or_else(|| format!("{k} is missing or not https://"))
    };
    Ok(Endpoints {
        authorize: endpoint("authorization_endpoint")?,
        token: endpoint("token_endpoint")?,
    })
}

/// Start a sign-in: a fresh `state`, `nonce` and PKCE verifier, bound to this browser by
/// the login cookie; off to the provider.
async fn login(State(w): State<Arc<Web>>) -> Response {
    let endpoints = match w.endpoints().await {
        Ok(e) => e,
        Err(r) => return refused(None, &r),
    };
    let (id, pending) = match w.sessions.begin() {
        Ok(p) => p,
        Err(e) => return problem(503, None, &e.to_string()),
    };
    let challenge = {
        use sha2::Digest;
        credwarden_core::encoding::Base64::UrlNoPad
            .encode(&sha2::Sha256::digest(pending.verifier.as_bytes()))
    };
    let Ok(mut url) = Url::parse(&endpoints.authorize) else {
        return problem(
            502,
            None,
            "the identity provider's authorization endpoint is not a URL",
        );
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &w.settings.client_id)
        .append_pair("redirect_uri", &w.settings.redirect_url)
        .append_pair("scope", "openid")
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut r = see_other(url.as_str());
    r.headers_mut().insert(
        header::SET_COOKIE,
        w.cookie(LOGIN_COOKIE, &id, "/auth", session::LOGIN_SECONDS),
    );
    r
}

/// The provider sent the browser back: the sign-in this browser started, its `state`, the
/// code exchanged with the verifier, the ID token verified as API tokens are, its `nonce`.
async fn callback(State(w): State<Arc<Web>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let q: std::collections::HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let again = "Sign in again from the start.";
    let Some(pending) =
        cookie(&parts.headers, LOGIN_COOKIE).and_then(|id| w.sessions.take_pending(&id))
    else {
        return problem(
            400,
            None,
            &format!("This sign-in is unknown or expired. {again}"),
        );
    };
    if let Some(e) = q.get("error") {
        return problem(
            400,
            None,
            &format!("The identity provider refused: {e}. {again}"),
        );
    }
    let (Some(code), Some(state)) = (q.get("code"), q.get("state")) else {
        return problem(
            400,
            None,
            &format!("The callback lacks code or state. {again}"),
        );
    };
    if !same_secret(&pending.state, state) {
        return problem(
            400,
            None,
            &format!("The sign-in state does not match. {again}"),
        );
    }
    let endpoints = match w.endpoints().await {
        Ok(e) => e,
        Err(r) => return refused(None, &r),
    };
    let form = [
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.clone()),
        ("redirect_uri", w.settings.redirect_url.clone()),
        ("client_id", w.settings.client_id.clone()),
        ("code_verifier", pending.verifier.clone()),
    ];
    let exchanged = tokio::task::spawn_blocking(move || exchange(&endpoints.token, &form)).await;
    let id_token = match exchanged {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            eprintln!("broker: web sign-in: token exchange failed: {e}");
            return problem(
                502,
                None,
                &format!("The identity provider did not give a token. {again}"),
            );
        }
        Err(e) => return problem(500, None, &e.to_string()),
    };
    let (caller, nonce) = match w.broker.verify_id_token(&id_token).await {
        Ok(v) => v,
        Err(r) => return refused(None, &r),
    };
    // Every sign-in is audited like a credential: who, from where, granted or refused.
    let Some(peer) = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
    else {
        return problem(500, None, "the request has no peer address");
    };
    let client = match crate::http::client_of(&w.broker, &parts, peer) {
        Ok(c) => c,
        Err(r) => return refused(None, &r),
    };
    let rid = crate::http::request_id();
    if !nonce.is_some_and(|n| same_secret(&pending.nonce, &n)) {
        let refusal = Refusal::new(
            400,
            "bad-nonce",
            format!("The ID token's nonce does not match. {again}"),
        );
        let refusal = w
            .broker
            .refuse_sign_in(&caller, client, &rid, refusal)
            .await;
        return problem(400, None, &refusal.message);
    }
    if let Err(r) = w.broker.audit_sign_in(&caller, client, &rid).await {
        return refused(None, &r);
    }
    // A new id at every sign-in: a session id planted before sign-in is never promoted.
    if let Some(old) = cookie(&parts.headers, SESSION_COOKIE) {
        w.sessions.remove(&old);
    }
    let lifetime = Duration::from_secs(w.settings.session_seconds);
    let id = match w.sessions.create(caller.user, caller.idp_groups, lifetime) {
        Ok(id) => id,
        Err(e) => return problem(503, None, &e.to_string()),
    };
    let mut r = see_other("/");
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        w.cookie(SESSION_COOKIE, &id, "/", w.settings.session_seconds),
    );
    h.append(header::SET_COOKIE, w.cookie(LOGIN_COOKIE, "", "/auth", 0));
    r
}

/// The code for tokens at the token endpoint; the ID token. Errors hold the provider's
/// error code only, never a token.
fn exchange(token_endpoint: &str, form: &[(&str, String)]) -> Result<String, String> {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = match http_agent().post(token_endpoint).send_form(&pairs) {
        Ok(r) => r,
        Err(ureq::Error::Status(status, r)) => {
            let code = r
                .into_string()
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            return Err(format!("HTTP {status} {code}"));
        }
        Err(e) => return Err(e.to_string()),
    };
    let text = resp.into_string().map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_str(&text).map_err(|_| "the answer is not JSON")?;
    doc.get("id_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the answer has no id_token".into())
}

async fn logout(State(w): State<Arc<Web>>, req: Request) -> Response {
    let (signed, _, _) = match w.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    w.sessions.remove(&signed.id);
    let body = r#"<p>You are signed out.</p><p><a href="/auth/login">Sign in again</a></p>"#;
    let mut r = html_response(StatusCode::OK, page("Signed out", None, body));
    r.headers_mut()
        .insert(header::SET_COOKIE, w.cookie(SESSION_COOKIE, "", "/", 0));
    r
}
