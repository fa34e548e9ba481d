//! A TCP proxy on 127.0.0.1:0 in front of a fake backend (OpenAI-compatible,
//! embeddings, anything over TCP) that can be switched, while the server
//! under test runs, between passing traffic through and two faults a real
//! backend shows: hanging (connections accepted, requests read, never
//! answered) and resetting (connections accepted, then reset with RST).
//! Switching closes the connections the last mode held, so pooled
//! keep-alive connections see the new mode at once.

#![allow(dead_code)] // Each test binary uses a different part of it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward both ways to the target.
    Pass,
    /// Accept and read, never answer (a backend stuck on a request).
    Hang,
    /// Accept, then reset the connection (RST) without answering.
    Reset,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to `target` (`host:port`), passing traffic through.
    pub async fn spawn(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (mode, _) = watch::channel(ProxyMode::Pass);
        let accepted = Arc::new(AtomicUsize::new(0));
        let modes = mode.clone();
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                conns.spawn(handle(inbound, target, modes.subscribe()));
            }
        });
        FaultProxy {
            addr,
            mode,
            accepted,
            task,
        }
    }

    /// A proxy in front of the HTTP service at `base_url`
    /// (`http://host:port/path`), and that URL pointing at the proxy.
    pub async fn in_front_of(base_url: &str) -> (FaultProxy, String) {
        let rest = base_url.strip_prefix("http://").expect("an http:// URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let proxy = FaultProxy::spawn(authority.parse().expect("host:port")).await;
        let url = format!("{}{path}", proxy.http_url());
        (proxy, url)
    }

    /// `host:port` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port` of the proxy.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches every connection, open and new, to `mode`.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Serves one connection in the mode of the moment until the mode changes.
async fn handle(mut inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<ProxyMode>) {
    let now = *mode.borrow_and_update();
    match now {
        ProxyMode::Pass => {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = mode.changed() => {}
            }
        }
        ProxyMode::Hang => {
            let mut sink = [0u8; 4096];
            loop {
                tokio::select! {
                    read = inbound.read(&mut sink) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    _ = mode.changed() => return,
                }
            }
        }
        ProxyMode::Reset => {
            // Let the request arrive first, as a backend that dies mid-request does.
            let mut first = [0u8; 1];
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(200),
                inbound.read(&mut first),
            )
            .await;
            let _ = inbound.set_zero_linger();
        }
    }
}
