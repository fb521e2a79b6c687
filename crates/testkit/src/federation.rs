//! The AWS federation endpoint on loopback (`signin.aws.amazon.com/federation`), strict as
//! AWS is: `GET` only; `Action=getSigninToken` with a `Session` JSON holding exactly
//! `sessionId`, `sessionKey` and `sessionToken` (temporary credentials: an `ASIA` key) and an
//! optional `SessionDuration` within 900..=43200 — checked further by the test's own
//! function (e.g. that the session is one moto's STS issued); `{"SigninToken": …}` for a good
//! request, 400 otherwise. `Action=login` with a sign-in token it issued redirects to the
//! `Destination`, as the console does; an unknown or spent token is refused (tokens are
//! single-use). Every request is recorded with what the server decided.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;

/// The role session a `getSigninToken` request carried.
#[derive(Clone, Debug)]
pub struct FederatedSession {
    pub session_id: String,
    pub session_key: String,
    pub session_token: String,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct FederationRequest {
    pub method: String,
    pub query: BTreeMap<String, String>,
    pub session: Option<FederatedSession>,
    pub status: u16,
    /// Why it was refused (empty when answered).
    pub why: String,
}

type Check = dyn Fn(&FederatedSession) -> Result<(), String> + Send + Sync;

#[derive(Default)]
struct State {
    requests: Vec<FederationRequest>,
    /// Sign-in token → the session id it was issued for; removed when used to log in.
    tokens: BTreeMap<String, String>,
}

/// The running server; its thread serves until the process ends.
pub struct FederationServer {
    /// `http://127.0.0.1:PORT/federation`
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FederationServer {
    /// Start the server; `check` decides whether a well-formed session is one AWS would
    /// accept.
    pub fn start(
        check: impl Fn(&FederatedSession) -> Result<(), String> + Send + Sync + 'static,
    ) -> FederationServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/federation", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let check: Arc<Check> = Arc::new(check);
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (state, check) = (shared.clone(), check.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &state, &*check);
                });
            }
        });
        FederationServer { url, state }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<FederationRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The session id a sign-in token was issued for (while it is unspent).
    pub fn token_session(&self, signin_token: &str) -> Option<String> {
        self.state.lock().unwrap().tokens.get(signin_token).cloned()
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>, check: &Check) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    let (head, _) = super::read_message(&mut reader)?;
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let target = words.next().unwrap_or("").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = super::form_fields(query.as_bytes());
    let mut record = FederationRequest {
        method: method.clone(),
        query: query.clone(),
        session: None,
        status: 400,
        why: String::new(),
    };
    let (status, body, location) = {
        let mut st = state.lock().unwrap();
        let answer = decide(path, &method, &query, &mut record, &mut st, check);
        record.status = answer.0;
        st.requests.push(record);
        answer
    };
    let reason = match status {
        200 => "OK",
        302 => "Found",
        _ => "Bad Request",
    };
    let mut out = reader.into_inner();
    let location = location
        .map(|l| format!("Location: {l}\r\n"))
        .unwrap_or_default();
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{location}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

fn decide(
    path: &str,
    method: &str,
    q: &BTreeMap<String, String>,
    record: &mut FederationRequest,
    st: &mut State,
    check: &Check,
) -> (u16, String, Option<String>) {
    let mut refuse = |why: &str| {
        record.why = why.to_owned();
        (400, format!("{{\"error\": {why:?}}}"), None)
    };
    if path != "/federation" {
        return refuse("no such path");
    }
    if method != "GET" {
        return refuse("the federation endpoint takes GET");
    }
    match q.get("Action").map(String::as_str) {
        Some("getSigninToken") => {}
        Some("login") => {
            let Some(session) = q.get("SigninToken").and_then(|t| st.tokens.remove(t)) else {
                return refuse("unknown or spent SigninToken");
            };
            let Some(dest) = q.get("Destination") else {
                return refuse("login needs Destination");
            };
            record.why = format!("signed in session {session}");
            return (302, String::new(), Some(dest.clone()));
        }
        _ => return refuse("Action must be getSigninToken or login"),
    }
    if let Some(d) = q.get("SessionDuration") {
        match d.parse::<i64>() {
            Ok(n) if (900..=43200).contains(&n) => {}
            _ => return refuse("SessionDuration must be 900..=43200"),
        }
    }
    let Some(Ok(Value::Object(s))) = q.get("Session").map(|s| serde_json::from_str(s)) else {
        return refuse("Session must be a JSON object");
    };
    let field = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(id), Some(key), Some(token)) = (
        field("sessionId"),
        field("sessionKey"),
        field("sessionToken"),
    ) else {
        return refuse("Session needs sessionId, sessionKey and sessionToken");
    };
    if s.len() != 3 {
        return refuse("Session holds other keys");
    }
    if !id.starts_with("ASIA") {
        return refuse("sessionId is not a temporary access key");
    }
    let session = FederatedSession {
        session_id: id.clone(),
        session_key: key,
        session_token: token,
    };
    record.session = Some(session.clone());
    if let Err(why) = check(&session) {
        return refuse(&format!("session refused: {why}"));
    }
    let mut b = [0u8; 48];
    SystemRandom::new().fill(&mut b).unwrap();
    let token = credwarden_core::encoding::Base64::UrlNoPad.encode(&b);
    st.tokens.insert(token.clone(), id);
    (
        200,
        serde_json::json!({"SigninToken": token}).to_string(),
        None,
    )
}

/// The ARN moto's STS says a set of credentials belongs to (`GetCallerIdentity` through
/// boto3): how a test's federation check knows a session came from moto's `AssumeRole`.
pub fn moto_caller_arn(moto_url: &str, s: &FederatedSession) -> Result<String, String> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import boto3, os
c = boto3.client("sts", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
    aws_access_key_id=os.environ["K"], aws_secret_access_key=os.environ["S"], aws_session_token=os.environ["T"])
print(c.get_caller_identity()["Arn"])
"#,
        )
        .env("ENDPOINT", moto_url)
        .env("K", &s.session_id)
        .env("S", &s.session_key)
        .env("T", &s.session_token)
        .env("AWS_CONFIG_FILE", "/nonexistent/credwarden-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credwarden-test")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err("GetCallerIdentity failed".into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
