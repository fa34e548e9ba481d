//! The reference: a bare tokio-tungstenite broadcast server, and how the
//! generator starts it and the Node `ws` server as child processes.
//!
//! Both speak the same tiny protocol: a connection whose first message is
//! `pub` publishes (each of its text messages goes to every subscriber and
//! is answered `ok`); any other first message makes it a subscriber, whose
//! later messages are read and ignored.

use crate::common::{free_port, Server};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

/// Runs the bare server until the process is killed. Each subscriber's task
/// writes every message it can take from the channel before one flush.
pub async fn bare_server(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let (tx, _) = broadcast::channel::<Message>(4096);
    loop {
        let (sock, _) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(sock).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let mut rx = tx.subscribe();
            let first = match stream.next().await {
                Some(Ok(m)) => Some(m),
                _ => None,
            };
            if matches!(&first, Some(Message::Text(t)) if t.as_str() == "pub") {
                while let Some(Ok(m)) = stream.next().await {
                    if m.is_text() {
                        let _ = tx.send(m);
                        if sink.send(Message::Text("ok".into())).await.is_err() {
                            return;
                        }
                    }
                }
                return;
            }
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(m) => {
                            if sink.feed(m).await.is_err() { return; }
                            while let Ok(m) = rx.try_recv() {
                                if sink.feed(m).await.is_err() { return; }
                            }
                            if sink.flush().await.is_err() { return; }
                        }
                        // A lagging subscriber loses messages; the generator
                        // counts them as missing, so that rate is not clean.
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    },
                    m = stream.next() => if !matches!(m, Some(Ok(_))) { return },
                }
            }
        });
    }
}

/// Starts `loadgen bare-server` (this binary) on a free port.
pub async fn spawn_bare() -> anyhow::Result<Server> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["bare-server", "--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut s = Server {
        child,
        addr,
        dir: None,
    };
    s.wait_listening().await?;
    Ok(s)
}

/// Starts `node benches/node-ws-broadcast.js` on a free port; `node_path`
/// is the `node_modules` directory that holds `ws` (set as `NODE_PATH`).
pub async fn spawn_node(script: &Path, node_path: Option<&Path>) -> anyhow::Result<Server> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut cmd = Command::new("node");
    cmd.arg(script).args(["127.0.0.1", &port.to_string()]);
    if let Some(p) = node_path {
        cmd.env("NODE_PATH", p);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut s = Server {
        child,
        addr,
        dir: None,
    };
    s.wait_listening().await?;
    Ok(s)
}
