//! AWS console sign-in for a role session (the custom identity broker flow): the session's
//! credentials go to the federation endpoint's `getSigninToken` (with `SessionDuration`), and
//! the sign-in token it answers becomes a `login` URL (`Issuer`, `Destination`,
//! `SigninToken`) that opens the console as that session.
//!
//! The functions here are the library the broker's `POST /v1/console` uses, and what a web
//! page of the broker can call. Both the request to the federation endpoint and the URL built
//! carry secrets (the session credentials, then a token good for fifteen minutes of console
//! sign-in), so neither ever appears in an error or a log line: errors say which step failed
//! and the endpoint's status, nothing of the query.

use std::time::Duration;

use thiserror::Error;
use url::Url;

use crate::config::ConsoleConfig;
use crate::error::ConfigError;
use crate::service::Issued;

/// Why a console sign-in URL could not be made.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConsoleError {
    #[error("destination {0:?} is not an https:// URL on an AWS console domain the broker allows")]
    Destination(String),
    #[error("the federation endpoint answered HTTP {0}")]
    Status(u16),
    #[error("the federation endpoint could not be reached ({0})")]
    Unreachable(String),
    #[error("the federation endpoint's answer has no SigninToken")]
    NoToken,
    #[error("the console session must last 900..=43200 seconds, not {0}")]
    Duration(i32),
}

/// The federation endpoint and what the login URL says, checked once at start-up.
#[derive(Clone, Debug)]
pub struct Federation {
    endpoint: Url,
    issuer: Option<String>,
    destination: Url,
    domains: Vec<String>,
}

/// The `Session` parameter: the role session's three parts, under the names the federation
/// endpoint reads.
#[derive(serde::Serialize)]
struct Session<'a> {
    #[serde(rename = "sessionId")]
    session_id: &'a str,
    #[serde(rename = "sessionKey")]
    session_key: &'a str,
    #[serde(rename = "sessionToken")]
    session_token: &'a str,
}

impl Federation {
    /// Check `[console]`: the federation URL carries credentials, so it must be `https://`
    /// (or `http://` to loopback, for a test server); the issuer and default destination are
    /// URLs too.
    pub fn from_config(c: &ConsoleConfig) -> Result<Federation, ConfigError> {
        let endpoint = crate::transport::secure_url(&c.federation_url)
            .map_err(|e| ConfigError::Invalid(format!("[console] federation_url: {e}")))?;
        if endpoint.query().is_some() {
            return Err(ConfigError::Invalid(
                "[console] federation_url: no query string (the broker adds the parameters)".into(),
            ));
        }
        if let Some(i) = &c.issuer {
            Url::parse(i)
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http"))
                .ok_or_else(|| {
                    ConfigError::Invalid(format!("[console] issuer {i:?} is not an http(s) URL"))
                })?;
        }
        let domains: Vec<String> = c
            .destination_domains
            .iter()
            .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        let mut f = Federation {
            endpoint,
            issuer: c.issuer.clone(),
            destination: Url::parse("https://console.aws.amazon.com/").expect("a URL"),
            domains,
        };
        f.destination = f.check_destination(&c.destination).map_err(|_| {
            ConfigError::Invalid(format!(
                "[console] destination {:?} must be https:// on one of destination_domains",
                c.destination
            ))
        })?;
        Ok(f)
    }

    /// The page to open after sign-in: `asked` when it is `https://` on an allowed domain
    /// (no user information), else the configured default when nothing was asked.
    pub fn destination(&self, asked: Option<&str>) -> Result<Url, ConsoleError> {
        match asked {
            None => Ok(self.destination.clone()),
            Some(a) => self.check_destination(a),
        }
    }

    fn check_destination(&self, text: &str) -> Result<Url, ConsoleError> {
        let bad = || ConsoleError::Destination(text.chars().take(200).collect());
        let url = Url::parse(text).map_err(|_| bad())?;
        let host = match url.host() {
            Some(url::Host::Domain(h)) => h.to_ascii_lowercase(),
            _ => return Err(bad()),
        };
        let allowed = self
            .domains
            .iter()
            .any(|d| host == *d || host.ends_with(&format!(".{d}")));
        if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
            return Err(bad());
        }
        if !allowed {
            return Err(bad());
        }
        Ok(url)
    }

    /// The `getSigninToken` request for `creds` (carries the session: never log it).
    fn signin_token_url(&self, creds: &Issued, session_seconds: i32) -> Url {
        let session = serde_json::to_string(&Session {
            session_id: &creds.access_key_id,
            session_key: &creds.secret_access_key,
            session_token: &creds.session_token,
        })
        .expect("strings serialise");
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("Action", "getSigninToken")
            .append_pair("SessionDuration", &session_seconds.to_string())
            .append_pair("Session", &session);
        url
    }

    /// Ask the federation endpoint for a sign-in token for this role session (blocking; at
    /// most 15 seconds). `session_seconds` is the console session's length (900..=43200).
    pub fn signin_token(
        &self,
        creds: &Issued,
        session_seconds: i32,
    ) -> Result<String, ConsoleError> {
        if !(900..=43200).contains(&session_seconds) {
            return Err(ConsoleError::Duration(session_seconds));
        }
        let url = self.signin_token_url(creds, session_seconds);
        let response = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(15))
            // A redirect could take the credentials somewhere else: the configured endpoint
            // is the only one trusted with them.
            .redirects(0)
            .build()
            .get(url.as_str())
            .call();
        // ureq's errors print the URL, and this URL holds the session: only the status or
        // the kind of transport failure is kept.
        let text = match response {
            Ok(r) if r.status() == 200 => r
                .into_string()
                .map_err(|e| ConsoleError::Unreachable(e.kind().to_string()))?,
            Ok(r) => return Err(ConsoleError::Status(r.status())),
            Err(ureq::Error::Status(code, _)) => return Err(ConsoleError::Status(code)),
            Err(ureq::Error::Transport(t)) => {
                return Err(ConsoleError::Unreachable(t.kind().to_string()))
            }
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|_| ConsoleError::NoToken)?;
        v.get("SigninToken")
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or(ConsoleError::NoToken)
    }

    /// The `login` URL that signs the browser in with `signin_token` and opens `destination`.
    pub fn login_url(&self, signin_token: &str, destination: &Url) -> String {
        let mut url = self.endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("Action", "login");
            if let Some(i) = &self.issuer {
                q.append_pair("Issuer", i);
            }
            q.append_pair("Destination", destination.as_str());
            q.append_pair("SigninToken", signin_token);
        }
        url.into()
    }
}

/// A console sign-in URL made for a caller. The URL signs anyone who has it in as the role
/// session for fifteen minutes: `Debug` leaves it out.
#[derive(Clone, serde::Serialize)]
pub struct ConsoleLogin {
    pub url: String,
    /// When the role session (and so the console session at the latest) ends.
    pub expiration: String,
    pub role_arn: String,
    /// The session's access key id (what CloudTrail shows for the console session's calls).
    pub access_key_id: String,
}

impl std::fmt::Debug for ConsoleLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleLogin")
            .field("role_arn", &self.role_arn)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn federation(url: &str) -> Result<Federation, ConfigError> {
        Federation::from_config(&ConsoleConfig {
            federation_url: url.into(),
            issuer: Some("https://broker.example.com/".into()),
            ..ConsoleConfig::default()
        })
    }

    fn issued() -> Issued {
        Issued {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret/+key".into(),
            session_token: "token&=x".into(),
            expiration: "2030-01-01T00:00:00Z".into(),
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
        }
    }

    #[test]
    fn the_federation_url_must_be_secure() {
        assert!(federation("https://signin.aws.amazon.com/federation").is_ok());
        assert!(federation("http://127.0.0.1:9/federation").is_ok());
        for bad in [
            "http://signin.aws.amazon.com/federation",
            "http://localhost@10.0.0.1/federation",
            "https://u:p@signin.aws.amazon.com/federation",
            "https://signin.aws.amazon.com/federation?Action=login",
        ] {
            assert!(federation(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations_stay_on_aws_console_domains() {
        let f = federation("https://signin.aws.amazon.com/federation").unwrap();
        assert_eq!(
            f.destination(None).unwrap().as_str(),
            "https://console.aws.amazon.com/"
        );
        assert!(f
            .destination(Some("https://us-east-1.console.aws.amazon.com/s3/home"))
            .is_ok());
        for bad in [
            "https://evil.example/",
            "https://aws.amazon.com.evil.example/",
            "https://evilaws.amazon.com/",
            "http://console.aws.amazon.com/",
            "https://x@console.aws.amazon.com/",
            "javascript:alert(1)",
            "https://127.0.0.1/",
        ] {
            assert!(f.destination(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_request_and_the_login_url_are_encoded() {
        let f = federation("https://signin.aws.amazon.com/federation").unwrap();
        let url = f.signin_token_url(&issued(), 3600);
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(q[0], ("Action".into(), "getSigninToken".into()));
        assert_eq!(q[1], ("SessionDuration".into(), "3600".into()));
        let session: serde_json::Value = serde_json::from_str(&q[2].1).unwrap();
        assert_eq!(session["sessionId"], "ASIAEXAMPLE");
        assert_eq!(session["sessionKey"], "secret/+key");
        assert_eq!(session["sessionToken"], "token&=x");
        let dest = f.destination(None).unwrap();
        let login = Url::parse(&f.login_url("tok+/=en", &dest)).unwrap();
        let q: std::collections::BTreeMap<String, String> =
            login.query_pairs().into_owned().collect();
        assert_eq!(q["Action"], "login");
        assert_eq!(q["Issuer"], "https://broker.example.com/");
        assert_eq!(q["Destination"], "https://console.aws.amazon.com/");
        assert_eq!(q["SigninToken"], "tok+/=en");
        assert!(f.signin_token(&issued(), 600).is_err());
        assert!(f.signin_token(&issued(), 50000).is_err());
    }

    /// An unreachable endpoint's error names neither the credentials nor the URL's query.
    #[test]
    fn errors_never_carry_the_session() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let f = federation(&format!("http://127.0.0.1:{port}/federation")).unwrap();
        let e = f.signin_token(&issued(), 900).unwrap_err().to_string();
        for secret in ["secret", "token", "ASIAEXAMPLE", "Session"] {
            assert!(!e.contains(secret), "{e}");
        }
        assert!(!format!("{:?}", issued()).contains("secret"));
    }
}
