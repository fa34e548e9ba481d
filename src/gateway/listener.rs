//! The listener's accept loop (HTTP/1, HTTP/2 and WebSocket upgrades on one
//! port), in place of `axum::serve` so that it can bound what a client
//! holds before it has said anything:
//!
//! - every connection is admitted by [`ConnLimits`] (per address and in
//!   total); a refused one gets a JSON 429 or 503 and is closed;
//! - a new connection must send a complete request head within
//!   `server.header_timeout_s`, and every later request head on a kept-alive
//!   connection too (slowloris, idle keep-alive), else it is closed;
//! - the client's address is put on every request as
//!   [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo).
//!
//! At shutdown it stops accepting, asks every connection to finish its
//! request in flight, and returns once all have closed (the caller bounds
//! the wait). Upgraded WebSockets are sessions of their own by then.

use super::limits::{ConnGuard, ConnLimits, Refusal};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// Refused connections answered at once; more are closed without a reply.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// The longest a refused connection is kept while it gets its answer.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// What the accept loop needs besides the router.
pub struct ListenerLimits {
    /// Open connections per address and in total.
    pub conns: Arc<ConnLimits>,
    /// Time allowed for a request head (and a new connection's first request).
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` fires and the connections
/// have finished.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    shutdown: CancellationToken,
) {
    let conns = TaskTracker::new();
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(v) => v,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                tracing::error!(error = %e, "accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        // Replies and events are small and written as they come: without
        // NODELAY, Nagle's algorithm holds a reply behind an unacknowledged event.
        let _ = tcp.set_nodelay(true);
        match limits.conns.admit(peer.ip()) {
            Ok(guard) => {
                conns.spawn(serve_connection(
                    tcp,
                    peer,
                    guard,
                    app.clone(),
                    limits.header_timeout,
                    shutdown.clone(),
                ));
            }
            Err(refusal) => {
                metrics::counter!("swarmbridge_connections_refused_total", "reason" => refusal.label())
                    .increment(1);
                tracing::debug!(%peer, reason = refusal.label(), "connection refused");
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    conns.spawn(async move {
                        refuse(tcp, refusal).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Drives one admitted connection until it closes.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let io = TokioIo::new(Admitted { tcp, _guard: guard });
    let requested = Arc::new(Notify::new());
    let seen = requested.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        seen.notify_one();
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        app.call(req)
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().enable_connect_protocol();
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    let mut first_deadline = pin!(tokio::time::sleep(header_timeout));
    let mut started = false;
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = requested.notified(), if !started => started = true,
            _ = &mut first_deadline, if !started => {
                tracing::debug!(%peer, "closed a connection that sent no request in time");
                break;
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answers a refused connection with a JSON error and closes it. The
/// request head is read first, so that closing does not reset the
/// connection under the answer.
async fn refuse(mut tcp: TcpStream, refusal: Refusal) {
    let (status, code, message) = refusal.reply();
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let reason = if status == 503 {
        "Service Unavailable"
    } else {
        "Too Many Requests"
    };
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        let mut buf = [0u8; 2048];
        let mut head = Vec::new();
        while let Ok(Ok(n)) = tokio::time::timeout(REFUSAL_TIME / 4, tcp.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > 16 * 1024 {
                break;
            }
        }
        tcp.write_all(reply.as_bytes()).await?;
        tcp.shutdown().await?;
        while let Ok(Ok(n)) = tokio::time::timeout(REFUSAL_TIME / 8, tcp.read(&mut buf)).await {
            if n == 0 {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// A connection together with its place under the limits: the place is
/// given back when the connection (or the WebSocket it became) is dropped.
struct Admitted {
    tcp: TcpStream,
    _guard: ConnGuard,
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}
