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

pub(crate) async fn serve<H: Handler>(
    listener: TcpListener,
    limits: ConnLimits,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ImdsError> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let builder = Arc::new(builder);
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

/// `{"Code": …, "Message": …}` — the shape EC2 and ECS use for their own JSON errors.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"Code": code, "Message": message}),
    )
}
