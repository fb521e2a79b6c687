//! # credwarden-testkit
//!
//! What the integration tests share: the moto server started on a free loopback port
//! (`python3 -m moto.server`, installed by `scripts/test`), boto3 one-liners to seed or check
//! an account, and a recording relay that sits between a client and moto so tests can assert
//! what was actually sent to AWS (e.g. the session policy inside an `AssumeRole`). The relay
//! can also play IAM Access Advisor, which moto lacks ([`Recorder::with_access_advisor`]):
//! it answers those two actions itself in IAM's wire format and forwards the rest. Tests
//! only ever talk to loopback.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod chromium;
pub mod federation;
pub mod oidc;
pub mod postgres;
pub mod webhook;

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    pub url: String,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released; good enough for a test server started next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Start moto on a free port and wait until it accepts connections.
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// [`Moto::start`] with moto's own settings, e.g. `MOTO_IAM_LOAD_MANAGED_POLICIES=true`
    /// for AWS managed policies such as `ReadOnlyAccess` (slower: every account loads them).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .envs(env.iter().copied())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server starts (pip install 'moto[server]')");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on {url}");
            std::thread::sleep(Duration::from_millis(200));
        }
        Moto { child, url, port }
    }

    /// `program` with the AWS environment of a test against this server: fixed test
    /// credentials and region, no profile files, no instance metadata — so nothing of the
    /// machine's own AWS set-up is used or printed.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/credwarden-test")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/credwarden-test",
            )
            .env_remove("AWS_PROFILE")
            .env("CREDWARDEN_TEST_MOTO", &self.url);
        c
    }

    /// Run a python script with `ENDPOINT` set to this server; returns its stdout.
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        python(script, &[("ENDPOINT", &self.url)], args)
    }
}

/// Run `python3 -c script args…` with extra environment; panics with stderr on failure.
pub fn python(script: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The boto3 keyword arguments for a client of the moto server at `os.environ["ENDPOINT"]`.
pub const BOTO3_KW: &str = r#"dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")"#;

/// One HTTP request as the relay saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub head: String,
    pub body: Vec<u8>,
}

/// A loopback HTTP/1.1 relay that records every request and forwards it to `upstream`.
/// One request per connection (it answers with `Connection: close`), which every HTTP
/// client handles by reconnecting.
pub struct Recorder {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// Set when the recorder is dropped: held requests are let go (their connections closed).
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Requests a relay never answers: the first whose request line contains each needle (a
/// hung server, for clients that must not wait on one forever).
struct Hold {
    needles: Vec<String>,
    held: Mutex<Vec<bool>>,
}

impl Hold {
    /// Whether this request is one to hold (and now counted as held).
    fn takes(&self, head: &str) -> bool {
        let line = head.lines().next().unwrap_or("");
        let mut held = self.held.lock().unwrap();
        for (i, needle) in self.needles.iter().enumerate() {
            if !held[i] && line.contains(needle.as_str()) {
                held[i] = true;
                return true;
            }
        }
        false
    }
}

impl Recorder {
    pub fn start(upstream_port: u16) -> Recorder {
        Recorder::relaying(upstream_port, None, Vec::new())
    }

    /// A relay that never answers the first request whose request line contains each of
    /// `needles` (it reads and records it, then holds the connection open until the recorder
    /// is dropped), and forwards everything else.
    pub fn holding_first(upstream_port: u16, needles: &[&str]) -> Recorder {
        let needles = needles.iter().map(|n| n.to_string()).collect();
        Recorder::relaying(upstream_port, None, needles)
    }

    /// Recorded requests whose request line contains `needle`.
    pub fn count_requests(&self, needle: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.head.lines().next().unwrap_or("").contains(needle))
            .count()
    }

    /// A relay that answers IAM's `GenerateServiceLastAccessedDetails` and
    /// `GetServiceLastAccessedDetails` itself, as `advisor` says, and forwards every other
    /// request to moto. Its requests are recorded like any other.
    pub fn with_access_advisor(upstream_port: u16, advisor: AccessAdvisorServer) -> Recorder {
        Recorder::relaying(upstream_port, Some(advisor), Vec::new())
    }

    fn relaying(
        upstream_port: u16,
        advisor: Option<AccessAdvisorServer>,
        hold: Vec<String>,
    ) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let advisor = advisor.map(|a| {
            Arc::new(Mutex::new(AdvisorState {
                server: a,
                jobs: Vec::new(),
            }))
        });
        let hold = Arc::new(Hold {
            held: Mutex::new(vec![false; hold.len()]),
            needles: hold,
        });
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = closed.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = seen.clone();
                let advisor = advisor.clone();
                let (hold, stop) = (hold.clone(), stop.clone());
                std::thread::spawn(move || {
                    let _ = relay(conn, upstream_port, &seen, advisor.as_deref(), &hold, &stop);
                });
            }
        });
        Recorder {
            url,
            requests,
            closed,
        }
    }

    /// How many recorded requests were IAM's `action` (e.g. "GetServiceLastAccessedDetails").
    pub fn count_action(&self, action: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| form_value(&r.body, "Action").as_deref() == Some(action))
            .count()
    }

    /// The decoded form fields of the recorded requests for IAM's `action`, in order.
    pub fn action_requests(&self, action: &str) -> Vec<BTreeMap<String, String>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| form_fields(&r.body))
            .filter(|f| f.get("Action").map(String::as_str) == Some(action))
            .collect()
    }

    /// Bodies of recorded requests, as text.
    pub fn bodies(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }
}

fn read_message(r: &mut BufReader<TcpStream>) -> std::io::Result<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((head, body))
}

fn relay(
    conn: TcpStream,
    upstream_port: u16,
    seen: &Mutex<Vec<Recorded>>,
    advisor: Option<&Mutex<AdvisorState>>,
    hold: &Hold,
    closed: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    let mut client = BufReader::new(conn);
    let (head, body) = read_message(&mut client)?;
    seen.lock().unwrap().push(Recorded {
        head: head.clone(),
        body: body.clone(),
    });
    if hold.takes(&head) {
        while !closed.load(std::sync::atomic::Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        return Ok(());
    }
    if let Some(advisor) = advisor {
        if let Some((status, xml)) = advisor.lock().unwrap().answer(&form_fields(&body)) {
            let reason = match status {
                200 => "OK",
                400 => "Bad Request",
                403 => "Forbidden",
                _ => "Not Found",
            };
            let mut out = client.into_inner();
            write!(
                out,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            )?;
            return out.flush();
        }
    }
    let head: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let mut up = TcpStream::connect(("127.0.0.1", upstream_port))?;
    up.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())?;
    up.write_all(&body)?;
    let mut up = BufReader::new(up);
    let (rhead, rbody) = read_message(&mut up)?;
    let rhead: String = rhead
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let mut out = client.into_inner();
    out.write_all(format!("{rhead}Connection: close\r\n\r\n").as_bytes())?;
    out.write_all(&rbody)?;
    out.flush()
}

/// `application/x-www-form-urlencoded` fields (the Query protocol's request body).
fn form_fields(body: &[u8]) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn form_value(body: &[u8], key: &str) -> Option<String> {
    form_fields(body).remove(key)
}

/// One service of a fake Access Advisor report.
#[derive(Clone, Debug)]
pub struct AdvisorService {
    /// `s3`, `ec2`, …
    pub namespace: String,
    /// "Amazon Simple Storage Service", …
    pub name: String,
    /// ISO 8601; `None`: not used in the tracking period.
    pub last_authenticated: Option<String>,
    /// `TrackedActionsLastAccessed` (action name without prefix, last accessed time), sent
    /// only for ACTION_LEVEL jobs; `None`: no such element (as AWS sends when nothing of the
    /// service is tracked or the role used none of it).
    pub tracked: Option<Vec<(String, Option<String>)>>,
}

impl AdvisorService {
    pub fn new(namespace: &str, name: &str, last_authenticated: Option<&str>) -> AdvisorService {
        AdvisorService {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            last_authenticated: last_authenticated.map(str::to_owned),
            tracked: None,
        }
    }

    /// With these tracked actions: (name, last accessed time).
    pub fn tracked(mut self, actions: &[(&str, Option<&str>)]) -> AdvisorService {
        self.tracked = Some(
            actions
                .iter()
                .map(|(a, t)| ((*a).to_owned(), t.map(str::to_owned)))
                .collect(),
        );
        self
    }
}

/// What the relay's Access Advisor answers. Every job is IN_PROGRESS on its first
/// `GetServiceLastAccessedDetails` and COMPLETED after; pages hold at most
/// `min(MaxItems, page_size)` services (IAM "might return fewer results, even when there are
/// more results available"), so a small `page_size` makes a client page through `Marker`.
#[derive(Clone, Debug)]
pub struct AccessAdvisorServer {
    /// Role ARN → its services (in the order given). A role not here gets an empty report.
    pub reports: BTreeMap<String, Vec<AdvisorService>>,
    /// Every job's JobCreationDate (ISO 8601); the completion date is the same.
    pub created: String,
    /// At most this many services a page (0: as many as MaxItems allows).
    pub page_size: usize,
    /// Answer every Access Advisor request with 403 AccessDenied.
    pub deny: bool,
}

impl AccessAdvisorServer {
    pub fn new(created: &str) -> AccessAdvisorServer {
        AccessAdvisorServer {
            reports: BTreeMap::new(),
            created: created.to_owned(),
            page_size: 0,
            deny: false,
        }
    }

    pub fn report(mut self, role_arn: &str, services: Vec<AdvisorService>) -> Self {
        self.reports.insert(role_arn.to_owned(), services);
        self
    }
}

struct AdvisorJob {
    arn: String,
    action_level: bool,
    gets: usize,
}

struct AdvisorState {
    server: AccessAdvisorServer,
    jobs: Vec<AdvisorJob>,
}

const IAM_XMLNS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A request id shaped like IAM's (a UUID), distinct per answer.
fn request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("0b6c5a52-1f1e-4f1f-9d0c-{n:012x}")
}

/// IAM's success envelope around `result`.
fn iam_ok(action: &str, result: &str) -> (u16, String) {
    (
        200,
        format!(
            "<{action}Response xmlns=\"{IAM_XMLNS}\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
            request_id()
        ),
    )
}

/// IAM's error format (`ErrorResponse` / `Error` with Type, Code, Message).
fn iam_error(status: u16, code: &str, message: &str) -> (u16, String) {
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    (
        status,
        format!(
            "<ErrorResponse xmlns=\"{IAM_XMLNS}\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            xml_escape(message),
            request_id()
        ),
    )
}

impl AdvisorState {
    /// The answer to an Access Advisor request; `None` for any other request (relayed).
    fn answer(&mut self, form: &BTreeMap<String, String>) -> Option<(u16, String)> {
        let action = form.get("Action")?.as_str();
        if !matches!(
            action,
            "GenerateServiceLastAccessedDetails" | "GetServiceLastAccessedDetails"
        ) {
            return None;
        }
        if self.server.deny {
            let resource = form
                .get("Arn")
                .or(form.get("JobId"))
                .cloned()
                .unwrap_or_default();
            return Some(iam_error(
                403,
                "AccessDenied",
                &format!("User: arn:aws:iam::123456789012:user/testing is not authorized to perform: iam:{action} on resource: {resource} because no identity-based policy allows the iam:{action} action"),
            ));
        }
        Some(if action == "GenerateServiceLastAccessedDetails" {
            self.generate(form)
        } else {
            self.get(form)
        })
    }

    fn generate(&mut self, form: &BTreeMap<String, String>) -> (u16, String) {
        let Some(arn) = form.get("Arn").filter(|a| a.len() >= 20) else {
            return iam_error(
                400,
                "InvalidInput",
                "Arn is required: 20 to 2048 characters",
            );
        };
        let action_level = match form.get("Granularity").map(String::as_str) {
            None | Some("SERVICE_LEVEL") => false,
            Some("ACTION_LEVEL") => true,
            Some(other) => {
                return iam_error(
                    400,
                    "InvalidInput",
                    &format!("Granularity {other} is not SERVICE_LEVEL or ACTION_LEVEL"),
                )
            }
        };
        self.jobs.push(AdvisorJob {
            arn: arn.clone(),
            action_level,
            gets: 0,
        });
        let id = job_id(self.jobs.len() - 1);
        iam_ok(
            "GenerateServiceLastAccessedDetails",
            &format!("<JobId>{id}</JobId>"),
        )
    }

    fn get(&mut self, form: &BTreeMap<String, String>) -> (u16, String) {
        let index = form
            .get("JobId")
            .and_then(|id| (0..self.jobs.len()).find(|i| job_id(*i) == *id));
        let Some(index) = index else {
            // Illustrative: IAM's reference lists NoSuchEntity for a job it does not know.
            return iam_error(404, "NoSuchEntity", "no job with this JobId");
        };
        let max_items = match form.get("MaxItems").map(|m| m.parse::<usize>()) {
            None => 100,
            Some(Ok(n)) if (1..=1000).contains(&n) => n,
            Some(_) => return iam_error(400, "InvalidInput", "MaxItems must be 1 to 1000"),
        };
        let job = &mut self.jobs[index];
        job.gets += 1;
        let created = xml_escape(&self.server.created);
        let job_type = if job.action_level {
            "ACTION_LEVEL"
        } else {
            "SERVICE_LEVEL"
        };
        if job.gets == 1 {
            return iam_ok(
                "GetServiceLastAccessedDetails",
                &format!("<JobStatus>IN_PROGRESS</JobStatus><JobType>{job_type}</JobType><JobCreationDate>{created}</JobCreationDate><ServicesLastAccessed/><IsTruncated>false</IsTruncated>"),
            );
        }
        let services = self
            .server
            .reports
            .get(&job.arn)
            .cloned()
            .unwrap_or_default();
        let start = match form.get("Marker") {
            None => 0,
            Some(m) => match m
                .strip_prefix(&format!("{}/", job_id(index)))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n < services.len())
            {
                Some(n) => n,
                None => return iam_error(400, "InvalidInput", "Marker is not one this job gave"),
            },
        };
        let size = match self.server.page_size {
            0 => max_items,
            cap => cap.min(max_items),
        };
        let end = (start + size).min(services.len());
        let mut members = String::new();
        for s in &services[start..end] {
            members.push_str(&format!(
                "<member><ServiceName>{}</ServiceName><ServiceNamespace>{}</ServiceNamespace>",
                xml_escape(&s.name),
                xml_escape(&s.namespace)
            ));
            if let Some(t) = &s.last_authenticated {
                members.push_str(&format!(
                    "<LastAuthenticated>{}</LastAuthenticated><LastAuthenticatedEntity>{}</LastAuthenticatedEntity><LastAuthenticatedRegion>us-east-1</LastAuthenticatedRegion><TotalAuthenticatedEntities>1</TotalAuthenticatedEntities>",
                    xml_escape(t),
                    xml_escape(&job.arn)
                ));
            } else {
                members.push_str("<TotalAuthenticatedEntities>0</TotalAuthenticatedEntities>");
            }
            if let (true, Some(tracked)) = (job.action_level, &s.tracked) {
                members.push_str("<TrackedActionsLastAccessed>");
                for (name, at) in tracked {
                    members.push_str(&format!(
                        "<member><ActionName>{}</ActionName>",
                        xml_escape(name)
                    ));
                    if let Some(at) = at {
                        members.push_str(&format!(
                            "<LastAccessedEntity>{}</LastAccessedEntity><LastAccessedTime>{}</LastAccessedTime><LastAccessedRegion>us-east-1</LastAccessedRegion>",
                            xml_escape(&job.arn),
                            xml_escape(at)
                        ));
                    }
                    members.push_str("</member>");
                }
                members.push_str("</TrackedActionsLastAccessed>");
            }
            members.push_str("</member>");
        }
        let more = if end < services.len() {
            format!(
                "<IsTruncated>true</IsTruncated><Marker>{}/{end}</Marker>",
                job_id(index)
            )
        } else {
            "<IsTruncated>false</IsTruncated>".to_owned()
        };
        iam_ok(
            "GetServiceLastAccessedDetails",
            &format!("<JobStatus>COMPLETED</JobStatus><JobType>{job_type}</JobType><JobCreationDate>{created}</JobCreationDate><JobCompletionDate>{created}</JobCompletionDate><ServicesLastAccessed>{members}</ServicesLastAccessed>{more}"),
        )
    }
}

/// The 36-character JobId of the job at `index`.
fn job_id(index: usize) -> String {
    format!("examplef-1305-c245-eba4-{index:012x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_forms_are_decoded() {
        let f = form_fields(
            b"Action=GenerateServiceLastAccessedDetails&Version=2010-05-08&Arn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp&Marker=a+b%2&Granularity=ACTION_LEVEL",
        );
        assert_eq!(f["Arn"], "arn:aws:iam::123456789012:role/app");
        assert_eq!(f["Marker"], "a b%2");
        assert_eq!(f["Granularity"], "ACTION_LEVEL");
    }

    #[test]
    fn advisor_jobs_progress_and_page() {
        let arn = "arn:aws:iam::123456789012:role/app";
        let mut server = AccessAdvisorServer::new("2026-12-05T09:14:02Z").report(
            arn,
            vec![
                AdvisorService::new("ec2", "Amazon EC2", Some("2026-12-05T07:02:00Z"))
                    .tracked(&[("DescribeInstances", Some("2026-12-05T07:02:00Z"))]),
                AdvisorService::new("iam", "AWS IAM", None),
                AdvisorService::new("s3", "Amazon S3", None),
            ],
        );
        server.page_size = 2;
        let mut state = AdvisorState {
            server,
            jobs: Vec::new(),
        };
        let form = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(state.answer(&form(&[("Action", "GetRole")])).is_none());
        let (status, xml) = state
            .answer(&form(&[
                ("Action", "GenerateServiceLastAccessedDetails"),
                ("Arn", arn),
                ("Granularity", "ACTION_LEVEL"),
            ]))
            .unwrap();
        assert_eq!(status, 200);
        let id = job_id(0);
        assert_eq!(id.len(), 36);
        assert!(xml.starts_with("<GenerateServiceLastAccessedDetailsResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><GenerateServiceLastAccessedDetailsResult><JobId>"));
        let get = |state: &mut AdvisorState, marker: Option<&str>| {
            let mut f = form(&[
                ("Action", "GetServiceLastAccessedDetails"),
                ("JobId", &id),
                ("MaxItems", "1000"),
            ]);
            if let Some(m) = marker {
                f.insert("Marker".into(), m.into());
            }
            state.answer(&f).unwrap().1
        };
        assert!(get(&mut state, None).contains("<JobStatus>IN_PROGRESS</JobStatus>"));
        let first = get(&mut state, None);
        assert!(
            first.contains("<JobStatus>COMPLETED</JobStatus><JobType>ACTION_LEVEL</JobType>")
                && first.contains("<TrackedActionsLastAccessed><member><ActionName>DescribeInstances</ActionName>")
                && first.contains("<ServiceNamespace>iam</ServiceNamespace>")
                && !first.contains("<ServiceNamespace>s3</ServiceNamespace>")
                && first.contains("<IsTruncated>true</IsTruncated>"),
            "{first}"
        );
        let marker = first
            .split("<Marker>")
            .nth(1)
            .and_then(|m| m.split("</Marker>").next())
            .unwrap()
            .to_owned();
        let last = get(&mut state, Some(&marker));
        assert!(
            last.contains("<ServiceNamespace>s3</ServiceNamespace>")
                && last.contains("<IsTruncated>false</IsTruncated>")
                && !last.contains("<Marker>"),
            "{last}"
        );
        state.server.deny = true;
        let (status, xml) = state
            .answer(&form(&[
                ("Action", "GenerateServiceLastAccessedDetails"),
                ("Arn", arn),
            ]))
            .unwrap();
        assert_eq!(status, 403);
        assert!(xml.starts_with("<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>AccessDenied</Code>"));
    }
}
