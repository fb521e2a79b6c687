//! Where a service's findings go: the metadata proxy's, the broker's and shrink's notices
//! are delivered the way `detect` delivers its own, so none of them is lost or jams.
//!
//! A [`FindingDelivery`] writes each finding, as it is made, to any of: stdout (one JSON
//! line), an owner-only JSON-lines file fsynced before `deliver` returns, and the spool of a
//! state file, once for every notify route the finding matches; a
//! [`crate::webhook::WebhookSender`] per route posts the route's queue in order, retrying
//! transient failures and moving permanent refusals to the dead letters. The spool is written
//! in the same call, so a finding reaches its webhooks even if an endpoint is down now or the
//! service restarts.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use credwarden_core::Finding;
use store::{Store, DEFAULT_DESTINATION};

use crate::error::SinkError;
use crate::route::{check_routes, FindingFacts, Route, RouteFilter, Router};
use crate::webhook::{RouteSenders, WebhookOptions, WebhookOutcome};

/// A single webhook and the state file whose spool feeds it (the broker's
/// `findings_webhook`): delivered as one route named [`DEFAULT_DESTINATION`] that takes every
/// finding.
#[derive(Clone)]
pub struct WebhookTarget {
    pub url: String,
    /// The SQLite state file holding the spool and the dead letters.
    pub state: PathBuf,
    pub options: WebhookOptions,
}

/// The URL is left out: it may be a secret.
impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("host", &crate::route::url_host(&self.url))
            .field("state", &self.state)
            .field("options", &self.options)
            .finish()
    }
}

/// What a service delivers to, with at most one webhook.
#[derive(Clone, Debug, Default)]
pub struct DeliveryConfig {
    /// One JSON line per finding on stdout.
    pub stdout: bool,
    /// Append to this JSON-lines file (created 0600, fsynced per finding).
    pub file: Option<PathBuf>,
    pub webhook: Option<WebhookTarget>,
}

/// Notify routes fed from one state file's spool.
#[derive(Clone, Debug)]
pub struct Notify {
    /// The SQLite state file holding the spool and the dead letters.
    pub state: PathBuf,
    /// Each finding goes to every route that matches it.
    pub routes: Vec<Route>,
}

/// What a service delivers to: stdout, a findings file, notify routes.
#[derive(Clone, Debug, Default)]
pub struct DeliveryPlan {
    /// One JSON line per finding on stdout.
    pub stdout: bool,
    /// Append to this JSON-lines file (created 0600, fsynced per finding).
    pub file: Option<PathBuf>,
    pub notify: Option<Notify>,
}

impl From<&DeliveryConfig> for DeliveryPlan {
    fn from(c: &DeliveryConfig) -> DeliveryPlan {
        DeliveryPlan {
            stdout: c.stdout,
            file: c.file.clone(),
            notify: c.webhook.as_ref().map(|w| Notify {
                state: w.state.clone(),
                routes: vec![Route {
                    name: DEFAULT_DESTINATION.to_owned(),
                    url: w.url.clone(),
                    options: w.options.clone(),
                    filter: RouteFilter::default(),
                }],
            }),
        }
    }
}

impl From<&DeliveryPlan> for DeliveryPlan {
    fn from(p: &DeliveryPlan) -> DeliveryPlan {
        p.clone()
    }
}

/// A service's finding sink; safe to share between threads.
pub struct FindingDelivery {
    stdout: bool,
    file: Option<Mutex<File>>,
    spool: Option<Mutex<Store>>,
    router: Router,
    senders: Mutex<Option<RouteSenders>>,
}

impl FindingDelivery {
    /// Open the file and the spool, and start a webhook sender per route. Routes are checked
    /// (names, URLs) before anything is opened.
    pub fn open(config: impl Into<DeliveryPlan>) -> Result<FindingDelivery, SinkError> {
        let config: DeliveryPlan = config.into();
        let notify = config.notify.as_ref().filter(|n| !n.routes.is_empty());
        if let Some(n) = notify {
            check_routes(&n.routes)?;
        }
        let file = match &config.file {
            Some(p) => Some(Mutex::new(crate::private::open_append(p)?)),
            None => None,
        };
        let (spool, router, senders) = match notify {
            Some(n) => {
                crate::private::prepare_database(&n.state)?;
                let store = Store::open(&n.state)?;
                let senders = RouteSenders::start(&n.state, &n.routes)?;
                (
                    Some(Mutex::new(store)),
                    Router::new(&n.routes),
                    Some(senders),
                )
            }
            None => (None, Router::default(), None),
        };
        Ok(FindingDelivery {
            stdout: config.stdout,
            file,
            spool,
            router,
            senders: Mutex::new(senders),
        })
    }

    /// Deliver one finding to every destination. Each is attempted even when an earlier
    /// one failed; the first failure is returned.
    pub fn deliver(&self, finding: &Finding) -> Result<(), SinkError> {
        let json = serde_json::to_string(finding)?;
        let mut first_error = None;
        if self.stdout {
            let mut out = std::io::stdout().lock();
            if let Err(e) = writeln!(out, "{json}").and_then(|_| out.flush()) {
                first_error.get_or_insert(SinkError::Deliver(e));
            }
        }
        if let Some(file) = &self.file {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            let written = file
                .write_all(json.as_bytes())
                .and_then(|_| file.write_all(b"\n"))
                .and_then(|_| file.sync_data());
            if let Err(e) = written {
                first_error.get_or_insert(SinkError::Deliver(e));
            }
        }
        if let Some(spool) = &self.spool {
            let destinations = self.router.destinations(&FindingFacts::of(finding));
            if !destinations.is_empty() {
                let mut spool = spool.lock().unwrap_or_else(|p| p.into_inner());
                // One transaction for all of them: every matching route gets the finding, or
                // (the error returned) none does.
                if let Err(e) = spool.spool_push(&destinations, &finding.id, &json) {
                    first_error.get_or_insert(SinkError::Store(e));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Give the webhook senders up to `wait` to empty their queues, then stop them: each
    /// route's outcome (none without routes). What is left stays in the spool for the next
    /// start.
    pub fn finish(&self, wait: Duration) -> Result<Vec<(String, WebhookOutcome)>, SinkError> {
        let senders = self
            .senders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match senders {
            Some(s) => s.finish(wait),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credwarden_core::{FindingSource, Severity};

    fn finding(id: &str) -> Finding {
        Finding {
            id: id.into(),
            detector: "test",
            severity: Severity::Low,
            time: "2026-01-01T00:00:00Z".into(),
            account: None,
            account_name: None,
            account_owner: None,
            region: None,
            principal: None,
            access_key_id: None,
            source: FindingSource::default(),
            event_ids: Vec::new(),
            summary: "s".into(),
            details: serde_json::Value::Null,
            remediation: "r".into(),
        }
    }

    /// A loopback endpoint accepting every post; the ids of the findings it got, in order.
    fn endpoint() -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: std::sync::Arc<Mutex<Vec<String>>> = Default::default();
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = conn.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if buf.len() >= h + 4 + len {
                        break Some(buf[h + 4..h + 4 + len].to_vec());
                    }
                };
                let Some(body) = body else { continue };
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                g.lock().unwrap().push(v["id"].as_str().unwrap().to_owned());
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        (url, got)
    }

    /// A service's findings go to every matching route; a route whose endpoint is down keeps
    /// its own queue and holds up no other.
    #[test]
    fn findings_go_to_their_routes_and_a_dead_one_blocks_none() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.sqlite");
        let (ops_url, ops) = endpoint();
        let (all_url, all) = endpoint();
        let route = |name: &str, url: &str, detectors: &[&str]| Route {
            name: name.into(),
            url: url.into(),
            options: WebhookOptions::default(),
            filter: RouteFilter {
                detectors: detectors.iter().map(|d| d.to_string()).collect(),
                ..Default::default()
            },
        };
        let plan = DeliveryPlan {
            stdout: false,
            file: None,
            notify: Some(Notify {
                state: state.clone(),
                routes: vec![
                    // Nothing listens on port 9 of loopback.
                    route("down", "http://127.0.0.1:9/hook", &[]),
                    route("ops", &ops_url, &["other"]),
                    route("all", &all_url, &[]),
                ],
            }),
        };
        let delivery = FindingDelivery::open(&plan).unwrap();
        let mut other = finding("b");
        other.detector = "other";
        for f in [finding("a"), other, finding("c")] {
            delivery.deliver(&f).unwrap();
        }
        let outcomes = delivery.finish(Duration::from_secs(3)).unwrap();
        let by_route = |name: &str| outcomes.iter().find(|(r, _)| r == name).unwrap().1;
        assert_eq!(*all.lock().unwrap(), ["a", "b", "c"]);
        assert_eq!(*ops.lock().unwrap(), ["b"]);
        assert_eq!((by_route("all").posted, by_route("all").left), (3, 0));
        assert_eq!((by_route("down").posted, by_route("down").left), (0, 3));
        assert_eq!(
            Store::open(&state).unwrap().spool_destinations().unwrap(),
            [("down".to_owned(), 3)]
        );

        // Two routes of one name are refused before anything is opened.
        let mut twice = plan.clone();
        twice.notify.as_mut().unwrap().routes[1].name = "down".into();
        twice.file = Some(dir.path().join("never.jsonl"));
        assert!(matches!(
            FindingDelivery::open(&twice),
            Err(SinkError::Route(crate::route::RouteError::Duplicate(_)))
        ));
        assert!(!dir.path().join("never.jsonl").exists());
    }

    #[test]
    fn findings_reach_the_file_and_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.sqlite");
        let config = DeliveryConfig {
            stdout: false,
            file: Some(dir.path().join("findings.jsonl")),
            webhook: Some(WebhookTarget {
                // Nothing listens on port 9 of loopback: the sender keeps the spool.
                url: "http://127.0.0.1:9/hook".into(),
                state: state.clone(),
                options: WebhookOptions::default(),
            }),
        };
        let delivery = FindingDelivery::open(&config).unwrap();
        delivery.deliver(&finding("a")).unwrap();
        delivery.deliver(&finding("b")).unwrap();
        let outcomes = delivery.finish(Duration::from_millis(200)).unwrap();
        assert_eq!(outcomes.len(), 1);
        let (route, outcome) = &outcomes[0];
        assert_eq!(route, DEFAULT_DESTINATION);
        assert_eq!(outcome.posted, 0);
        assert_eq!(outcome.left, 2, "kept for the next start");
        let text = std::fs::read_to_string(dir.path().join("findings.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| l.contains("\"detector\":\"test\"")));
    }
}
