//! The HTTP/1.1 accept loop both servers share: hyper connections with a header read timeout
//! (slow clients are cut off), a header size cap, a connection cap, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::error::ImdsError;

pub(crate) type Body = Full<Bytes>;

/// Limits applied to every connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnLimits {
    pub header_read_timeout: Duration,
    /// Request line + headers, bytes. hyper's buffer cannot be smaller than 8 KiB; smaller
    /// limits are enforced per request by the handler.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
}

pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;
    /// A connection ended with a protocol error (malformed request, oversized headers, header
    /// timeout): hyper has already answered or closed it; this is for the log.
    fn connection_error(&self, _peer: SocketAddr, _error: &hyper::Error) {}
}

pub(crate) async fn bind(
    addr: SocketAddr,
    allow_non_loopback: bool,
) -> Result<TcpListener, ImdsError> {
    if !addr.ip().is_loopback() && !allow_non_loopback {
        return Err(ImdsError::NonLoopback(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| ImdsError::Bind { addr, source })
}

fn conn_builder(limits: &ConnLimits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
}

/// Serve one connection over any byte stream with the settings [`serve`] gives each TCP
/// connection (no listener, no connection cap): the fuzz targets drive the servers through an
/// in-memory pipe with it. Half-closes are allowed, so a writer that has sent everything and
/// shut its side still reads the answers (else hyper drops the connection at the EOF).
pub(crate) async fn serve_stream<H, S>(
    stream: S,
    limits: &ConnLimits,
    handler: Arc<H>,
    peer: SocketAddr,
) -> Result<(), hyper::Error>
where
    H: Handler,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let h = handler.clone();
    let service = hyper::service::service_fn(move |req| {
        let h = h.clone();
        async move { Ok::<_, std::convert::Infallible>(h.handle(req, peer).await) }
    });
    let mut builder = conn_builder(limits);
    builder.half_close(true);
    let result = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = &result {
        handler.connection_error(peer, e);
    }
    result
}

pub(crate) async fn serve<H: Handler>(
    listener: TcpListener,
    limits: ConnLimits,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ImdsError> {
    let builder = Arc::new(conn_builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // EMFILE and friends: back off briefly instead of spinning or dying.
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
        };
        // At capacity the new connection is closed at once: better than queueing it behind
        // slow clients (and the cap is what makes slowloris cost an attacker anything).
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let handler = handler.clone();
        let mut stop = stop_rx.clone();
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
            let _permit = permit;
            let h = handler.clone();
            let service = hyper::service::service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, std::convert::Infallible>(h.handle(req, peer).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = result {
                handler.connection_error(peer, &e);
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Give in-flight requests a moment, then drop whatever is left (idle keep-alives).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    Ok(())
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

/// Headers an AWS *API* client sends and a metadata client never does. An SDK pointed at the
/// metadata service as a custom endpoint (`s3.get_object(Bucket="latest", Key="meta-data/…")`
/// with path-style addressing) carries a User-Agent the proxy allow-lists, so its signing
/// headers are what gives it away: `Authorization`, and `X-Amz-*` (`X-Amz-Date`,
/// `X-Amz-Content-SHA256`, `X-Amz-Security-Token`, `X-Amz-Target`, `X-Amz-Checksum-Mode`, …).
/// `X-Amz-User-Agent` is the one exception: the Rust and Go SDKs' own metadata clients send it.
/// Names are compared in any case and with `_` read as `-`, as some servers do.
/// Returns the offending header's name.
pub(crate) fn api_client_header(headers: &hyper::HeaderMap) -> Option<String> {
    headers.keys().find_map(|name| {
        let canonical = name.as_str().replace('_', "-");
        let api = canonical == "authorization"
            || canonical == "proxy-authorization"
            || (canonical.starts_with("x-amz-") && canonical != "x-amz-user-agent");
        api.then(|| name.as_str().to_owned())
    })
}

/// `{"Code": …, "Message": …}` — the shape EC2 and ECS use for their own JSON errors.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"Code": code, "Message": message}),
    )
}

#[cfg(test)]
mod tests {
    use hyper::header::{HeaderMap, HeaderName, HeaderValue};

    fn headers(names: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for n in names {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        h
    }

    #[test]
    fn api_clients_are_told_apart_from_metadata_clients() {
        for api in [
            &["user-agent", "authorization"][..],
            &["X-Amz-Date"],
            &["x-amz-content-sha256"],
            &["X-AMZ-SECURITY-TOKEN"],
            &["x_amz_date"],
            &["x-amz-checksum-mode"],
            &["x-amz-target"],
            &["x-amz-meta-anything"],
            &["Proxy-Authorization"],
        ] {
            assert!(super::api_client_header(&headers(api)).is_some(), "{api:?}");
        }
        for metadata in [
            &["user-agent", "x-aws-ec2-metadata-token"][..],
            &["x-aws-ec2-metadata-token-ttl-seconds"],
            &[
                "x-amz-user-agent",
                "amz-sdk-invocation-id",
                "amz-sdk-request",
            ],
            &["accept", "accept-encoding", "connection"],
            &[],
        ] {
            assert_eq!(
                super::api_client_header(&headers(metadata)),
                None,
                "{metadata:?}"
            );
        }
    }
}
