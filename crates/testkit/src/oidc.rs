//! A small OpenID Connect provider on loopback, for `credwarden login` and the broker's JWT
//! verification: discovery (`/.well-known/openid-configuration`), a JWKS with one P-256 key,
//! the device authorization grant (RFC 8628: `authorization_pending`, `slow_down`,
//! `expired_token`, `access_denied`), the authorization code grant with PKCE (RFC 7636, S256
//! only; codes are single-use and bound to their redirect URI), and rotating refresh tokens.
//! ID tokens are ES256 JWTs with `iss`, `aud` (the client id), `sub`, `groups`, `exp`, `iat`
//! and the request's `nonce`.
//!
//! "The user" is played by the test: [`OidcProvider::approve`] / [`OidcProvider::deny`] (or a
//! POST to `/activate`, what a person does at the verification page) for device codes; the
//! authorization endpoint signs in the configured user at once and redirects, so any HTTP
//! client can play the browser. What the provider refused, and why, is kept in
//! [`OidcProvider::refusals`].

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use credwarden_core::encoding::Base64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// What the provider says and how strict it is.
#[derive(Clone, Debug)]
pub struct OidcOptions {
    pub client_id: String,
    /// The user every sign-in is for, and their groups (the `groups` claim).
    pub user: String,
    pub groups: Vec<String>,
    /// ID and access token lifetime.
    pub token_seconds: i64,
    /// The device flow's polling interval (seconds).
    pub interval: u64,
    /// How long a device code lives (seconds).
    pub device_seconds: u64,
    /// Answer the first poll of each device code with `slow_down`.
    pub slow_down_first: bool,
    /// The `issuer` the discovery document claims (default: the provider's real URL); set it
    /// to something else to play a mixed-up or impostor provider.
    pub discovery_issuer: Option<String>,
}

impl OidcOptions {
    pub fn new(client_id: &str, user: &str, groups: &[&str]) -> OidcOptions {
        OidcOptions {
            client_id: client_id.into(),
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            token_seconds: 600,
            interval: 1,
            device_seconds: 60,
            slow_down_first: false,
            discovery_issuer: None,
        }
    }
}

struct Device {
    user_code: String,
    approved: Option<bool>,
    interval: u64,
    last_poll: Option<Instant>,
    slowed: bool,
    expires: Instant,
}

struct Code {
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
}

struct State {
    opts: OidcOptions,
    devices: HashMap<String, Device>,
    codes: HashMap<String, Code>,
    /// Refresh tokens still valid (each is replaced when used).
    refresh: HashMap<String, ()>,
    /// Token endpoint requests by grant type.
    token_requests: BTreeMap<String, usize>,
    refusals: Vec<String>,
}

/// The running provider; its thread serves until the process ends.
pub struct OidcProvider {
    /// `http://127.0.0.1:PORT`: the issuer, and the base of every endpoint.
    pub issuer: String,
    /// The JWKS document the provider serves at `/jwks`.
    pub jwks: String,
    key: Arc<EcdsaKeyPair>,
    state: Arc<Mutex<State>>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b).unwrap();
    Base64::UrlNoPad.encode(&b)
}

impl OidcProvider {
    pub fn start(opts: OidcOptions) -> OidcProvider {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = key.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "oidc-test", "use": "sig",
            "alg": "ES256", "x": Base64::UrlNoPad.encode(&point[1..33]),
            "y": Base64::UrlNoPad.encode(&point[33..65])}]})
        .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let provider = OidcProvider {
            issuer,
            jwks,
            key: Arc::new(key),
            state: Arc::new(Mutex::new(State {
                opts,
                devices: HashMap::new(),
                codes: HashMap::new(),
                refresh: HashMap::new(),
                token_requests: BTreeMap::new(),
                refusals: Vec::new(),
            })),
        };
        let server = provider.handle();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || {
                    let _ = server.serve(conn);
                });
            }
        });
        provider
    }

    fn handle(&self) -> Handle {
        Handle {
            issuer: self.issuer.clone(),
            jwks: self.jwks.clone(),
            key: self.key.clone(),
            state: self.state.clone(),
        }
    }

    /// Sign an ID token for `user` as this provider would (for tests that need one directly).
    pub fn id_token(&self, user: &str, groups: &[&str], seconds: i64) -> String {
        let opts = self.state.lock().unwrap().opts.clone();
        self.handle().sign(
            &json!({"iss": self.issuer, "aud": opts.client_id, "sub": user,
            "groups": groups, "iat": now(), "exp": now() + seconds}),
        )
    }

    /// The user approves the device code shown as `user_code`. False if no such code.
    pub fn approve(&self, user_code: &str) -> bool {
        self.decide(user_code, true)
    }

    /// The user refuses the device code shown as `user_code`.
    pub fn deny(&self, user_code: &str) -> bool {
        self.decide(user_code, false)
    }

    fn decide(&self, user_code: &str, approve: bool) -> bool {
        let mut st = self.state.lock().unwrap();
        match st.devices.values_mut().find(|d| d.user_code == user_code) {
            Some(d) => {
                d.approved = Some(approve);
                true
            }
            None => false,
        }
    }

    /// Change what the provider does from now on (token lifetime, user, groups…).
    pub fn set_options(&self, f: impl FnOnce(&mut OidcOptions)) {
        f(&mut self.state.lock().unwrap().opts);
    }

    /// How many token endpoint requests used `grant_type` (the short name: `device_code`,
    /// `authorization_code`, `refresh_token`).
    pub fn token_requests(&self, grant: &str) -> usize {
        let st = self.state.lock().unwrap();
        st.token_requests.get(grant).copied().unwrap_or(0)
    }

    /// Every request the provider refused, as `error: why`.
    pub fn refusals(&self) -> Vec<String> {
        self.state.lock().unwrap().refusals.clone()
    }

    /// Forget every refresh token (the provider revoked the user's sessions).
    pub fn revoke_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh.clear();
    }
}

#[derive(Clone)]
struct Handle {
    issuer: String,
    jwks: String,
    key: Arc<EcdsaKeyPair>,
    state: Arc<Mutex<State>>,
}

/// An HTTP answer: status, content type, body, extra headers.
type Answer = (u16, &'static str, String, Vec<(&'static str, String)>);

fn json_answer(status: u16, v: Value) -> Answer {
    (status, "application/json", v.to_string(), Vec::new())
}

impl Handle {
    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": "oidc-test", "typ": "JWT"});
        let msg = format!(
            "{}.{}",
            Base64::UrlNoPad.encode(header.to_string().as_bytes()),
            Base64::UrlNoPad.encode(claims.to_string().as_bytes())
        );
        let sig = self.key.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
        format!("{msg}.{}", Base64::UrlNoPad.encode(sig.as_ref()))
    }

    fn serve(&self, conn: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(conn);
        let (head, body) = super::read_message(&mut reader)?;
        let request_line = head.lines().next().unwrap_or("");
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("").to_owned();
        let target = words.next().unwrap_or("").to_owned();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let query = super::form_fields(query.as_bytes());
        let form = super::form_fields(&body);
        let answer = match (method.as_str(), path) {
            ("GET", "/.well-known/openid-configuration") => self.discovery(),
            ("GET", "/jwks") => (200, "application/json", self.jwks.clone(), Vec::new()),
            ("POST", "/device") => self.device(&form),
            ("POST", "/activate") => self.activate(&form),
            ("POST", "/token") => self.token(&form),
            ("GET", "/authorize") => self.authorize(&query),
            _ => json_answer(404, json!({"error": "not_found"})),
        };
        let (status, ctype, body, headers) = answer;
        let reason = match status {
            200 => "OK",
            302 => "Found",
            400 => "Bad Request",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        let mut out = reader.into_inner();
        let mut text = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        out.write_all(text.as_bytes())?;
        out.write_all(body.as_bytes())?;
        out.flush()
    }

    fn refuse(&self, st: &mut State, status: u16, error: &str, why: &str) -> Answer {
        st.refusals.push(format!("{error}: {why}"));
        json_answer(status, json!({"error": error, "error_description": why}))
    }

    fn discovery(&self) -> Answer {
        let st = self.state.lock().unwrap();
        let i = &self.issuer;
        json_answer(
            200,
            json!({
                "issuer": st.opts.discovery_issuer.clone().unwrap_or_else(|| i.clone()),
                "authorization_endpoint": format!("{i}/authorize"),
                "token_endpoint": format!("{i}/token"),
                "device_authorization_endpoint": format!("{i}/device"),
                "jwks_uri": format!("{i}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code", "refresh_token",
                    "urn:ietf:params:oauth:grant-type:device_code"],
            }),
        )
    }

    fn device(&self, form: &BTreeMap<String, String>) -> Answer {
        let mut st = self.state.lock().unwrap();
        if form.get("client_id") != Some(&st.opts.client_id) {
            return self.refuse(&mut st, 401, "invalid_client", "unknown client_id");
        }
        let device_code = random(32);
        // Eight letters, as RFC 8628 suggests, shown as XXXX-XXXX.
        let mut b = [0u8; 8];
        SystemRandom::new().fill(&mut b).unwrap();
        let letters: String = b
            .iter()
            .map(|x| char::from(b"BCDFGHJKLMNPQRSTVWXZ"[usize::from(*x) % 20]))
            .collect();
        let user_code = format!("{}-{}", &letters[..4], &letters[4..]);
        let (interval, seconds) = (st.opts.interval, st.opts.device_seconds);
        st.devices.insert(
            device_code.clone(),
            Device {
                user_code: user_code.clone(),
                approved: None,
                interval,
                last_poll: None,
                slowed: false,
                expires: Instant::now() + Duration::from_secs(seconds),
            },
        );
        let i = &self.issuer;
        json_answer(
            200,
            json!({"device_code": device_code, "user_code": user_code,
                "verification_uri": format!("{i}/activate"),
                "verification_uri_complete": format!("{i}/activate?user_code={user_code}"),
                "expires_in": seconds, "interval": interval}),
        )
    }

    /// The verification page's form: `user_code` and `decision` (`approve` or `deny`).
    fn activate(&self, form: &BTreeMap<String, String>) -> Answer {
        let mut st = self.state.lock().unwrap();
        let code = form.get("user_code").cloned().unwrap_or_default();
        let approve = form.get("decision").map(String::as_str) != Some("deny");
        match st.devices.values_mut().find(|d| d.user_code == code) {
            Some(d) => {
                d.approved = Some(approve);
                (
                    200,
                    "text/html",
                    "<p>Done. Return to your terminal.</p>".into(),
                    Vec::new(),
                )
            }
            None => self.refuse(&mut st, 400, "invalid_request", "no such user code"),
        }
    }

    fn authorize(&self, q: &BTreeMap<String, String>) -> Answer {
        let mut st = self.state.lock().unwrap();
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        if get("client_id") != st.opts.client_id {
            return self.refuse(&mut st, 400, "unauthorized_client", "unknown client_id");
        }
        if get("response_type") != "code" {
            return self.refuse(&mut st, 400, "unsupported_response_type", "code only");
        }
        // RFC 8252: a native app's redirect is a loopback IP literal over http.
        let redirect = get("redirect_uri");
        if !redirect.starts_with("http://127.0.0.1:") {
            return self.refuse(
                &mut st,
                400,
                "invalid_request",
                "redirect_uri must be loopback",
            );
        }
        if get("code_challenge_method") != "S256" || get("code_challenge").len() != 43 {
            return self.refuse(&mut st, 400, "invalid_request", "PKCE S256 is required");
        }
        if get("state").is_empty() {
            return self.refuse(&mut st, 400, "invalid_request", "state is required");
        }
        let code = random(24);
        st.codes.insert(
            code.clone(),
            Code {
                redirect_uri: redirect.clone(),
                challenge: get("code_challenge"),
                nonce: q.get("nonce").cloned(),
            },
        );
        let sep = if redirect.contains('?') { '&' } else { '?' };
        let location = format!("{redirect}{sep}code={code}&state={}", encode(&get("state")));
        (
            302,
            "text/plain",
            String::new(),
            vec![("Location", location)],
        )
    }

    fn tokens(&self, st: &mut State, nonce: Option<String>) -> Answer {
        let o = &st.opts;
        let mut claims = json!({"iss": self.issuer, "aud": o.client_id, "sub": o.user,
            "groups": o.groups, "iat": now(), "exp": now() + o.token_seconds});
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        let id_token = self.sign(&claims);
        let access = self.sign(&json!({"iss": self.issuer, "aud": "api", "sub": o.user,
            "exp": now() + o.token_seconds}));
        let refresh = random(32);
        st.refresh.insert(refresh.clone(), ());
        json_answer(
            200,
            json!({"access_token": access, "token_type": "Bearer", "expires_in": st.opts.token_seconds,
                "id_token": id_token, "refresh_token": refresh, "scope": "openid offline_access"}),
        )
    }

    fn token(&self, form: &BTreeMap<String, String>) -> Answer {
        let mut st = self.state.lock().unwrap();
        let grant = form.get("grant_type").cloned().unwrap_or_default();
        let short = grant.rsplit(':').next().unwrap_or("").to_owned();
        *st.token_requests.entry(short.clone()).or_default() += 1;
        if form.get("client_id") != Some(&st.opts.client_id) {
            return self.refuse(&mut st, 401, "invalid_client", "unknown client_id");
        }
        let get = |k: &str| form.get(k).cloned().unwrap_or_default();
        match grant.as_str() {
            "urn:ietf:params:oauth:grant-type:device_code" => {
                let code = get("device_code");
                let slow_first = st.opts.slow_down_first;
                let Some(d) = st.devices.get_mut(&code) else {
                    return self.refuse(&mut st, 400, "invalid_grant", "unknown device code");
                };
                if Instant::now() > d.expires {
                    st.devices.remove(&code);
                    return self.refuse(&mut st, 400, "expired_token", "device code expired");
                }
                let too_soon = d
                    .last_poll
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(d.interval));
                d.last_poll = Some(Instant::now());
                if too_soon || (slow_first && !d.slowed) {
                    d.slowed = true;
                    d.interval += 5;
                    let why = if too_soon {
                        "polled too soon"
                    } else {
                        "slow down"
                    };
                    return self.refuse(&mut st, 400, "slow_down", why);
                }
                match d.approved {
                    None => self.refuse(&mut st, 400, "authorization_pending", "not yet"),
                    Some(false) => {
                        st.devices.remove(&code);
                        self.refuse(&mut st, 400, "access_denied", "the user refused")
                    }
                    Some(true) => {
                        st.devices.remove(&code);
                        self.tokens(&mut st, None)
                    }
                }
            }
            "authorization_code" => {
                // A code is spent when presented, right or wrong: a replay never works.
                let Some(c) = st.codes.remove(&get("code")) else {
                    return self.refuse(&mut st, 400, "invalid_grant", "unknown or used code");
                };
                if c.redirect_uri != get("redirect_uri") {
                    return self.refuse(&mut st, 400, "invalid_grant", "redirect_uri differs");
                }
                let verifier = get("code_verifier");
                let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
                if !(43..=128).contains(&verifier.len())
                    || Base64::UrlNoPad.encode(digest.as_ref()) != c.challenge
                {
                    return self.refuse(&mut st, 400, "invalid_grant", "PKCE verifier mismatch");
                }
                self.tokens(&mut st, c.nonce)
            }
            "refresh_token" => {
                if st.refresh.remove(&get("refresh_token")).is_none() {
                    return self.refuse(&mut st, 400, "invalid_grant", "unknown refresh token");
                }
                self.tokens(&mut st, None)
            }
            _ => self.refuse(&mut st, 400, "unsupported_grant_type", "no such grant"),
        }
    }
}

/// Percent-encode a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
