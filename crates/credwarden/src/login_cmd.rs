//! `credwarden login` and `logout`: sign in to the identity provider the broker trusts, and
//! keep the tokens for `creds` and `console`.
//!
//! - **Discovery**: `ISSUER/.well-known/openid-configuration`; the document's `issuer` must
//!   be the issuer asked for, exactly (OpenID Connect Discovery §4.3: a provider cannot speak
//!   for another), and every endpoint must be `https://` (plain `http://` only to loopback).
//! - **Device authorization grant** (RFC 8628), the default: the verification URI and user
//!   code are printed; the token endpoint is polled at the given interval, `slow_down` adds
//!   five seconds, `authorization_pending` waits, `expired_token` and `access_denied` end it.
//! - **Authorization code with PKCE** (RFC 7636, S256) with `--browser`: a loopback redirect
//!   (`http://127.0.0.1:PORT/callback`, RFC 8252) on a free port, a random `state` that the
//!   answer must carry (else the sign-in is abandoned), a `nonce` the ID token must carry.
//!
//! The tokens come straight from the token endpoint over TLS, so their signature is left to
//! the broker (OpenID Connect Core §3.1.3.7); the client checks that the ID token names the
//! issuer and this client, and reads `exp` only to know when to refresh. Tokens are kept in
//! `login.json` in the private cache folder ([`crate::user_files`]) and never printed; errors
//! from the identity provider are shown by their code, with any token we sent cut out.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use credwarden_core::encoding::Base64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::user_files;

/// What `NOT SIGNED IN` says, wherever the client needs a token and has none.
pub const NOT_SIGNED_IN: &str = "not signed in: run `credwarden login`";

/// The client configuration file (TOML), so that day-to-day commands need no flags:
///
/// ```toml
/// broker = "https://broker.example.com"
/// issuer = "https://idp.example.com"
/// client_id = "credwarden-cli"
/// scope = "openid email groups offline_access"
/// token = "id"            # which token the broker verifies: "id" (default) or "access"
/// ca_file = "/etc/credwarden/broker-ca.pem"
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub broker: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// Read the client configuration: `explicit` must exist; the default place may be missing.
pub fn client_config(explicit: Option<&Path>) -> Result<ClientConfig> {
    let (path, must) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match user_files::client_config_path() {
            Some(p) => (p, false),
            None => return Ok(ClientConfig::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display())),
        Err(e) if !must && e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The identity provider (OIDC issuer URL; default: $CREDWARDEN_ISSUER, or `issuer` in the
    /// client config).
    #[arg(long, env = "CREDWARDEN_ISSUER")]
    pub issuer: Option<String>,
    /// This client's id at the identity provider (a public client; default:
    /// $CREDWARDEN_CLIENT_ID, or `client_id` in the client config).
    #[arg(long, env = "CREDWARDEN_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Scopes asked for (default "openid offline_access"; offline_access gets a refresh token).
    #[arg(long)]
    pub scope: Option<String>,
    /// Sign in in a browser (authorization code with PKCE on a loopback redirect) instead of
    /// entering a code (device authorization).
    #[arg(long)]
    pub browser: bool,
    /// With --browser: print the sign-in URL, do not open a browser.
    #[arg(long, requires = "browser")]
    pub no_open: bool,
    /// Which token `creds` sends the broker: `id` (the ID token, audience = client id) or
    /// `access`.
    #[arg(long, value_parser = ["id", "access"])]
    pub token: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// The client configuration file (default: $CREDWARDEN_CLIENT_CONFIG, or
    /// ~/.config/credwarden/client.toml).
    #[arg(long, value_name = "FILE")]
    pub client_config: Option<PathBuf>,
}

/// The signed-in session as kept in `login.json`. No `Debug`: it holds tokens.
#[derive(Serialize, Deserialize)]
struct Session {
    issuer: String,
    client_id: String,
    token_endpoint: String,
    /// `id` or `access`: which token is the broker's bearer token.
    token_kind: String,
    id_token: Option<String>,
    access_token: Option<String>,
    refresh_token: Option<String>,
    /// When the bearer token expires (Unix seconds).
    expires_at: i64,
}

impl Session {
    fn bearer(&self) -> Option<&str> {
        match self.token_kind.as_str() {
            "access" => self.access_token.as_deref(),
            _ => self.id_token.as_deref(),
        }
    }
}

fn login_file() -> Result<PathBuf> {
    Ok(user_files::cache_dir()?.join("login.json"))
}

fn now() -> i64 {
    credwarden_core::clock::now_millis() / 1000
}

fn random(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| anyhow!("no system randomness"))?;
    Ok(Base64::UrlNoPad.encode(&b))
}

/// The claims of a compact JWT, unverified (only to read `exp`, `iss`, `aud`, `sub`).
pub fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&Base64::UrlNoPad.decode(payload)?).ok()
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        // A redirect could carry a code or refresh token to another host, or off TLS.
        .redirects(0)
        .build()
}

/// An endpoint the provider named: it will carry codes and tokens, so TLS (or loopback).
fn endpoint(doc: &Value, key: &str) -> Result<Option<String>> {
    match doc.get(key).and_then(Value::as_str) {
        None => Ok(None),
        Some(u) => {
            broker::transport::secure_url(u).with_context(|| format!("discovery: {key}"))?;
            Ok(Some(u.to_owned()))
        }
    }
}

struct Discovery {
    token_endpoint: String,
    device_endpoint: Option<String>,
    authorization_endpoint: Option<String>,
}

fn discover(agent: &ureq::Agent, issuer: &str) -> Result<Discovery> {
    broker::transport::secure_url(issuer).context("--issuer")?;
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let text = agent
        .get(&url)
        .call()
        .map_err(|e| anyhow!("cannot read {url}: {}", short_error(&e)))?
        .into_string()?;
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("{url}: not JSON"))?;
    let claimed = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    if claimed != issuer {
        bail!("{url}: the document says its issuer is {claimed:?}, not {issuer:?}; refusing it");
    }
    Ok(Discovery {
        token_endpoint: endpoint(&doc, "token_endpoint")?
            .with_context(|| format!("{url}: no token_endpoint"))?,
        device_endpoint: endpoint(&doc, "device_authorization_endpoint")?,
        authorization_endpoint: endpoint(&doc, "authorization_endpoint")?,
    })
}

/// A ureq error in a few words (the URLs asked here carry no secret; the status is enough).
fn short_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, _) => format!("HTTP {code}"),
        ureq::Error::Transport(t) => t.kind().to_string(),
    }
}

/// An OAuth error answer: its `error` code and description, with any of `secrets` cut out
/// (a provider echoing what it was sent must not put a token on the terminal).
struct OAuthError {
    error: String,
    description: String,
}

fn redact(text: &str, secrets: &[&str]) -> String {
    let mut t: String = text.chars().take(300).collect();
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        t = t.replace(s, "[redacted]");
    }
    t
}

/// POST a form to the token (or device) endpoint: the JSON answer, or the OAuth error.
fn post_form(
    agent: &ureq::Agent,
    url: &str,
    fields: &[(&str, &str)],
    secrets: &[&str],
) -> Result<std::result::Result<Value, OAuthError>> {
    match agent.post(url).send_form(fields) {
        Ok(r) => Ok(Ok(serde_json::from_str(&r.into_string()?)
            .with_context(|| format!("{url}: the answer is not JSON"))?)),
        Err(ureq::Error::Status(code, r)) => {
            let v: Value = r
                .into_string()
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            match v.get("error").and_then(Value::as_str) {
                Some(error) => Ok(Err(OAuthError {
                    error: redact(error, secrets),
                    description: redact(
                        v.get("error_description")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        secrets,
                    ),
                })),
                None => bail!("{url}: HTTP {code}"),
            }
        }
        Err(e) => bail!("cannot reach {url}: {}", short_error(&e)),
    }
}

fn describe(e: &OAuthError) -> String {
    if e.description.is_empty() {
        e.error.clone()
    } else {
        format!("{} ({})", e.error, e.description)
    }
}

/// Sign in and keep the tokens.
pub fn login(args: &LoginArgs, err: &mut dyn Write) -> Result<()> {
    let cfg = client_config(args.client_config.as_deref())?;
    let issuer = args.issuer.clone().or(cfg.issuer).context(
        "no identity provider: --issuer URL, $CREDWARDEN_ISSUER, or issuer = in the client config",
    )?;
    let client_id = args.client_id.clone().or(cfg.client_id).context(
        "no client id: --client-id ID, $CREDWARDEN_CLIENT_ID, or client_id = in the client config",
    )?;
    let scope = args
        .scope
        .clone()
        .or(cfg.scope)
        .unwrap_or_else(|| "openid offline_access".into());
    let token_kind = args
        .token
        .clone()
        .or(cfg.token)
        .unwrap_or_else(|| "id".into());
    if !matches!(token_kind.as_str(), "id" | "access") {
        bail!("token = {token_kind:?}: use \"id\" or \"access\"");
    }
    let agent = agent();
    let d = discover(&agent, &issuer)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let (tokens, nonce) = if args.browser {
        let (t, n) = pkce_flow(&agent, &d, &client_id, &scope, args.no_open, deadline, err)?;
        (t, Some(n))
    } else {
        (
            device_flow(&agent, &d, &client_id, &scope, deadline, err)?,
            None,
        )
    };
    let session = session_from(
        &tokens,
        &issuer,
        &client_id,
        &d.token_endpoint,
        &token_kind,
        nonce.as_deref(),
        None,
    )?;
    save(&session)?;
    let who = session
        .id_token
        .as_deref()
        .and_then(jwt_claims)
        .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "you".into());
    writeln!(err, "Signed in as {who} at {issuer}.")?;
    Ok(())
}

/// Check a token endpoint answer and make the session to keep. `previous_refresh` is kept
/// when a refresh answer brings no new refresh token.
fn session_from(
    t: &Value,
    issuer: &str,
    client_id: &str,
    token_endpoint: &str,
    token_kind: &str,
    nonce: Option<&str>,
    previous_refresh: Option<String>,
) -> Result<Session> {
    let s = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_owned);
    let session = Session {
        issuer: issuer.to_owned(),
        client_id: client_id.to_owned(),
        token_endpoint: token_endpoint.to_owned(),
        token_kind: token_kind.to_owned(),
        id_token: s("id_token"),
        access_token: s("access_token"),
        refresh_token: s("refresh_token").or(previous_refresh),
        expires_at: 0,
    };
    let bearer = session.bearer().with_context(|| {
        format!("the identity provider sent no {token_kind} token (is `openid` in the scope?)")
    })?;
    if let Some(id) = &session.id_token {
        let c = jwt_claims(id).context("the ID token is not a JWT")?;
        if c.get("iss").and_then(Value::as_str) != Some(issuer) {
            bail!("the ID token was issued by someone else than {issuer}: refusing it");
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => a == client_id,
            Some(Value::Array(l)) => l.iter().any(|a| a.as_str() == Some(client_id)),
            _ => false,
        };
        if !aud_ok {
            bail!("the ID token is not for client {client_id}: refusing it");
        }
        if let Some(n) = nonce {
            if c.get("nonce").and_then(Value::as_str) != Some(n) {
                bail!("the ID token does not carry this sign-in's nonce: refusing it (replayed?)");
            }
        }
    }
    let exp = jwt_claims(bearer)
        .and_then(|c| c.get("exp").and_then(Value::as_i64))
        .or_else(|| {
            t.get("expires_in")
                .and_then(Value::as_i64)
                .map(|s| now() + s)
        })
        .unwrap_or(now() + 300);
    Ok(Session {
        expires_at: exp,
        ..session
    })
}

fn save(session: &Session) -> Result<()> {
    let path = login_file()?;
    user_files::write_private(&path, &serde_json::to_vec(session)?)
}

fn device_flow(
    agent: &ureq::Agent,
    d: &Discovery,
    client_id: &str,
    scope: &str,
    deadline: Instant,
    err: &mut dyn Write,
) -> Result<Value> {
    let url = d.device_endpoint.as_deref().context(
        "the identity provider offers no device authorization (device_authorization_endpoint); try --browser",
    )?;
    let v = match post_form(
        agent,
        url,
        &[("client_id", client_id), ("scope", scope)],
        &[],
    )? {
        Ok(v) => v,
        Err(e) => bail!("device authorization refused: {}", describe(&e)),
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let device_code = s("device_code").context("device authorization: no device_code")?;
    let user_code = s("user_code").context("device authorization: no user_code")?;
    let uri = s("verification_uri")
        .or(s("verification_url"))
        .context("device authorization: no verification_uri")?;
    let mut interval = v
        .get("interval")
        .and_then(Value::as_u64)
        .unwrap_or(5)
        .max(1);
    let expires = v.get("expires_in").and_then(Value::as_u64).unwrap_or(600);
    let deadline = deadline.min(Instant::now() + Duration::from_secs(expires));
    writeln!(err, "To sign in, open {uri} and enter the code {user_code}")?;
    if let Some(complete) = s("verification_uri_complete") {
        writeln!(err, "(or open {complete})")?;
    }
    err.flush()?;
    let grant = "urn:ietf:params:oauth:grant-type:device_code";
    loop {
        std::thread::sleep(Duration::from_secs(interval));
        if Instant::now() >= deadline {
            bail!("the sign-in code expired before it was used: run `credwarden login` again");
        }
        let fields = [
            ("grant_type", grant),
            ("device_code", device_code.as_str()),
            ("client_id", client_id),
        ];
        match post_form(agent, &d.token_endpoint, &fields, &[&device_code])? {
            Ok(tokens) => return Ok(tokens),
            Err(e) => match e.error.as_str() {
                "authorization_pending" => {}
                // RFC 8628 §3.5: this and every later poll five seconds further apart.
                "slow_down" => interval += 5,
                "expired_token" => bail!(
                    "the sign-in code expired before it was used: run `credwarden login` again"
                ),
                "access_denied" => bail!("sign-in was refused at the identity provider"),
                _ => bail!("sign-in failed: {}", describe(&e)),
            },
        }
    }
}

/// Open `url` in the user's browser: `$BROWSER`, else the desktop's opener.
pub fn open_browser(url: &str) -> Result<()> {
    let program = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| {
            if cfg!(target_os = "macos") {
                "open".into()
            } else {
                "xdg-open".into()
            }
        });
    let status = std::process::Command::new(&program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{program} failed ({status})");
    }
    Ok(())
}

fn pkce_flow(
    agent: &ureq::Agent,
    d: &Discovery,
    client_id: &str,
    scope: &str,
    no_open: bool,
    deadline: Instant,
    err: &mut dyn Write,
) -> Result<(Value, String)> {
    let authorize = d
        .authorization_endpoint
        .as_deref()
        .context("the identity provider has no authorization_endpoint")?;
    let verifier = random(32)?; // 43 characters, RFC 7636 §4.1
    let challenge = Base64::UrlNoPad
        .encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    let state = random(16)?;
    let nonce = random(16)?;
    // RFC 8252 §7.3: the loopback IP literal, not `localhost` (which may resolve elsewhere).
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
    let redirect = format!("http://{}/callback", listener.local_addr()?);
    let mut url = url::Url::parse(authorize)?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    writeln!(
        err,
        "Sign in at this address (it waits on {redirect}):\n  {url}"
    )?;
    err.flush()?;
    if !no_open {
        if let Err(e) = open_browser(url.as_str()) {
            writeln!(
                err,
                "(could not open a browser: {e}; open the address yourself)"
            )?;
        }
    }
    let code = wait_for_code(&listener, &state, deadline)?;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("client_id", client_id),
        ("code_verifier", verifier.as_str()),
    ];
    match post_form(agent, &d.token_endpoint, &fields, &[&code, &verifier])? {
        Ok(t) => Ok((t, nonce)),
        Err(e) => bail!(
            "the identity provider refused the sign-in code: {}",
            describe(&e)
        ),
    }
}

/// Wait for the browser to come back to the loopback redirect with this sign-in's `state`;
/// answer it with a short page. Any answer with another state ends the sign-in: it is not
/// ours (a forged or replayed redirect), and the code it carries is not used.
fn wait_for_code(listener: &TcpListener, state: &str, deadline: Instant) -> Result<String> {
    listener.set_nonblocking(true)?;
    loop {
        if Instant::now() >= deadline {
            bail!(
                "no sign-in came back before the timeout: run `credwarden login --browser` again"
            );
        }
        let (conn, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(e).context("the loopback redirect listener failed"),
        };
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        // Drain the headers so the browser sees an answer, not a reset.
        let mut h = String::new();
        while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
            h.clear();
        }
        let mut out = reader.into_inner();
        let mut reply = |status: &str, text: &str| {
            let _ = write!(
                out,
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = out.flush();
        };
        let target = line.split_whitespace().nth(1).unwrap_or("");
        let Some(query) = target.strip_prefix("/callback?") else {
            reply("404 Not Found", "<p>Not here.</p>");
            continue;
        };
        let q: std::collections::BTreeMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        if q.get("state").map(String::as_str) != Some(state) {
            reply(
                "400 Bad Request",
                "<p>This sign-in answer is not for the sign-in in progress. Nothing was done.</p>",
            );
            bail!("a sign-in answer came back with the wrong state: abandoned (possible cross-site request forgery); run `credwarden login --browser` again");
        }
        if let Some(e) = q.get("error") {
            reply(
                "400 Bad Request",
                "<p>Sign-in failed; see your terminal.</p>",
            );
            bail!(
                "sign-in was refused at the identity provider: {}",
                redact(e, &[])
            );
        }
        let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
            reply("400 Bad Request", "<p>No code in the answer.</p>");
            bail!("the sign-in answer has no code");
        };
        reply(
            "200 OK",
            "<p>Signed in to credwarden. You can close this tab.</p>",
        );
        return Ok(code.clone());
    }
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {}

/// Forget the sign-in and every cached credential.
pub fn logout(err: &mut dyn Write) -> Result<()> {
    let removed = user_files::remove(&login_file()?)?;
    let creds = crate::creds_cache::clear()?;
    writeln!(
        err,
        "{}; {creds} cached credential(s) removed.",
        if removed {
            "Signed out"
        } else {
            "Not signed in"
        }
    )?;
    Ok(())
}

/// Where `creds` and `console` get the bearer token: `--token-file`, else
/// `$CREDWARDEN_TOKEN`, else the sign-in of `credwarden login` — refreshed with its refresh
/// token when it expires within a minute. Errors say what to do, never the token.
pub fn bearer_token(token_file: Option<&Path>) -> Result<String> {
    if let Some(f) = token_file {
        let t =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        return Ok(t.trim().to_owned());
    }
    if let Some(t) = std::env::var("CREDWARDEN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(t.trim().to_owned());
    }
    let path = login_file()?;
    let bytes = user_files::read_private(&path)?.context(NOT_SIGNED_IN)?;
    let session: Session = serde_json::from_slice(&bytes)
        .map_err(|_| anyhow!("{} is damaged: {NOT_SIGNED_IN} again", path.display()))?;
    if session.expires_at - now() > 60 {
        if let Some(t) = session.bearer() {
            return Ok(t.to_owned());
        }
    }
    let Some(refresh) = session.refresh_token.clone() else {
        bail!("your sign-in has expired: run `credwarden login`");
    };
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", session.client_id.as_str()),
    ];
    broker::transport::secure_url(&session.token_endpoint)
        .with_context(|| format!("{}: token_endpoint", path.display()))?;
    match post_form(&agent(), &session.token_endpoint, &fields, &[&refresh])? {
        Ok(t) => {
            let renewed = session_from(
                &t,
                &session.issuer,
                &session.client_id,
                &session.token_endpoint,
                &session.token_kind,
                None,
                Some(refresh.clone()),
            )?;
            save(&renewed)?;
            Ok(renewed.bearer().unwrap_or_default().to_owned())
        }
        Err(e) if e.error == "invalid_grant" => {
            bail!("your sign-in has expired: run `credwarden login`")
        }
        Err(e) => bail!(
            "cannot renew your sign-in: {}; run `credwarden login`",
            describe(&e)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_never_echo_our_secrets() {
        let refresh = "rt-0123456789abcdef";
        let said = format!("refresh token {refresh} is unknown");
        assert!(!redact(&said, &[refresh]).contains(refresh));
        assert!(redact(&said, &[refresh]).contains("[redacted]"));
        assert_eq!(redact(&"x".repeat(1000), &[]).len(), 300);
    }

    #[test]
    fn unverified_claims_are_read_for_expiry_only() {
        let payload = Base64::UrlNoPad.encode(br#"{"exp": 5, "sub": "alice"}"#);
        let c = jwt_claims(&format!("h.{payload}.s")).unwrap();
        assert_eq!(c["exp"], 5);
        assert!(jwt_claims("opaque-token").is_none());
    }
}
