//! `--metrics ADDRESS`: the sync's metrics over HTTP, for Prometheus (GET /metrics). The
//! registry and its text format are `prometheus-client`'s; this is only the listener.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use essync::sync::Metrics;
use essync::sync::metrics::CONTENT_TYPE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `metrics` on `address` in the background; returns the address bound (port 0 picks a
/// free one).
pub async fn serve(address: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot serve metrics on {address}"))?;
    let bound = listener
        .local_addr()
        .context("the metrics listener has no address")?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                // A request line and headers; nothing essync serves needs a body.
                let mut request = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let (status, content_type, body) =
                    if line.starts_with("GET ") && (path == "/metrics" || path == "/") {
                        ("200 OK", CONTENT_TYPE, metrics.render())
                    } else {
                        (
                            "404 Not Found",
                            "text/plain; charset=utf-8",
                            "essync serves GET /metrics\n".to_string(),
                        )
                    };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(bound)
}
