//! Proxy overhead: latency p50/p99 and requests/s, direct to an `imds::serve` upstream vs
//! through `imds::proxy`, under a fixed offered load (default 5000 req/s over 32 keep-alive
//! connections, 5 s per run). The load generator is built in (no oha/wrk needed): each
//! connection sends on its own fixed schedule and latency is measured from the scheduled
//! send time, so a slow server cannot hide queueing (no coordinated omission).
//!
//! `cargo bench -p credwarden-imds` — env BENCH_RATE, BENCH_CONNS, BENCH_SECS override.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use imds::creds::{Credentials, StaticSource};
use imds::log::NullLog;
use imds::proxy::{MetadataProxy, ProxyConfig};
use imds::serve::{MetadataServer, ServeConfig};

const PATH: &str = "/latest/meta-data/iam/security-credentials/bench-role";
const UA: &str = "Botocore/1.34.0 Python/3.12.1 Linux/6.1.0";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn load(addr: SocketAddr, rate: u64, conns: u64, secs: u64) -> (Vec<Duration>, f64, u64) {
    let per_conn = Duration::from_secs_f64(conns as f64 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..conns {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let mut errors = 0u64;
            // Stagger the connections across one period.
            let mut next = start + per_conn.mul_f64(i as f64 / conns as f64);
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let req = hyper::Request::get(PATH)
                    .header("host", "169.254.169.254")
                    .header("user-agent", UA)
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                match send.send_request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        let _ = resp.into_body().collect().await;
                        lat.push(next.elapsed());
                    }
                    _ => errors += 1,
                }
                next += per_conn;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = Instant::now()
        .saturating_duration_since(start)
        .as_secs_f64();
    all.sort();
    let rps = all.len() as f64 / elapsed;
    (all, rps, errors)
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let creds = Credentials {
            access_key_id: "ASIABENCH00000000001".into(),
            secret_access_key: "bench-secret".into(),
            session_token: Some("bench-token".into()),
            expiration: credwarden_core::EventTime(now + 3_600_000),
            last_updated: credwarden_core::EventTime(now),
        };
        let mut cfg = ServeConfig::new("bench-role");
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        // The load generator sends plain GETs (IMDSv1), as the published numbers were taken.
        cfg.ec2 = imds::serve::Ec2Access::V1AndV2;
        let server = MetadataServer::bind(cfg, Arc::new(StaticSource(creds)), Arc::new(NullLog)).await.unwrap();
        let upstream = server.local_addr();
        tokio::spawn(server.run(std::future::pending()));
        // v1_credentials: the same token-less GETs as the direct run, so the runs compare.
        let pcfg = ProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: format!("http://{upstream}"),
            v1_credentials: true,
            ..ProxyConfig::default()
        };
        let proxy = MetadataProxy::bind(pcfg, Arc::new(NullLog), Arc::new(|_f: imds::log::Finding| {})).await.unwrap();
        let via = proxy.local_addr();
        tokio::spawn(proxy.run(std::future::pending()));
        tokio::time::sleep(Duration::from_millis(300)).await;

        let (rate, conns, secs) = (env("BENCH_RATE", 5000), env("BENCH_CONNS", 32), env("BENCH_SECS", 5));
        println!("offered load {rate} req/s over {conns} keep-alive connections, {secs} s per run, GET {PATH} (allow-listed UA)");
        let _ = load(upstream, rate, conns, 1).await; // warm-up
        for (name, addr) in [("direct", upstream), ("via proxy", via)] {
            let (lat, rps, errors) = load(addr, rate, conns, secs).await;
            println!("{name:>10}: p50 {:>7.0} µs  p99 {:>7.0} µs  {rps:>7.0} req/s  ({} ok, {errors} errors)", pct(&lat, 0.50), pct(&lat, 0.99), lat.len());
        }
    });
}
