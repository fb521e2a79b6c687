//! Which URLs may carry a secret: the client's bearer token to the broker, and the JWKS the
//! broker trusts. TLS, except to this machine: `http://` only when the host is a loopback IP
//! literal (`127.0.0.0/8`, `::1`) or exactly `localhost`. The URL is parsed, never matched by
//! prefix, so `http://localhost@10.255.255.1/` (user `localhost`, host 10.255.255.1) and
//! `http://127.0.0.1.evil.example/` are refused. A user name or password in the URL is
//! refused whatever the scheme.

use url::Url;

use crate::error::UrlError;

/// Parse `text` and check that it may carry a secret (the rule webhooks follow too:
/// [`sink::route::secret_may_travel`]).
pub fn secure_url(text: &str) -> Result<Url, UrlError> {
    let url = Url::parse(text).map_err(|e| UrlError::Parse(text.to_owned(), e.to_string()))?;
    match sink::route::secret_may_travel(&url) {
        Ok(()) => Ok(url),
        Err(sink::route::InsecureUrl::Userinfo) => Err(UrlError::Userinfo(redacted(&url))),
        Err(_) => Err(UrlError::Insecure(redacted(&url))),
    }
}

/// The URL without its user information (which may be a password).
fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::secure_url;
    use crate::error::UrlError;

    #[test]
    fn plain_http_only_to_loopback_hosts() {
        for good in [
            "https://broker.example.com",
            "https://10.0.0.5:8700/",
            "http://127.0.0.1:8700",
            "http://127.8.9.10/",
            "http://[::1]:8700/",
            "http://localhost:8700",
            "http://LOCALHOST/",
        ] {
            assert!(secure_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://localhost@10.255.255.1",
            "http://127.0.0.1@10.255.255.1:8700/",
            "http://[::1]@10.255.255.1/",
            "http://127.0.0.1.evil.example/",
            "http://localhost.evil.example/",
            "http://localhostx/",
            "http://10.255.255.1/",
            "http://[::ffff:10.0.0.1]/",
            "http://0.0.0.0/",
            "ftp://127.0.0.1/",
            "file:///etc/passwd",
            "127.0.0.1:8700",
        ] {
            assert!(secure_url(bad).is_err(), "{bad} was accepted");
        }
        // Credentials in the URL never pass, and never show in the error.
        let e = secure_url("https://user:hunter2hunter2@broker.example.com/").unwrap_err();
        assert!(matches!(e, UrlError::Userinfo(_)), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
