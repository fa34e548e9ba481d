//! `loadgen startup`: time from spawning `swarmbridge serve` on a fresh
//! directory to the first `200` from `/health`.

use crate::common::{free_port, row, Server};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

/// One `GET /health`; true on a 200.
async fn health_ok(addr: std::net::SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    let req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.is_ok() && &head == b"HTTP/1.1 200"
}

/// Spawns the server `runs` times, each on a new empty directory (so it
/// creates the database and runs every migration), polling `/health` every
/// millisecond; prints the median and the maximum.
pub async fn startup(bin: &Path, runs: usize) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let t0 = Instant::now();
        let child = Command::new(bin)
            .arg("serve")
            .current_dir(dir.path())
            .env(
                "SWARMBRIDGE_DATABASE_URL",
                dir.path().join("swarmbridge.db"),
            )
            .env("SWARMBRIDGE_LISTEN", addr.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut server = Server {
            child,
            addr,
            dir: Some(dir),
        };
        let deadline = t0 + Duration::from_secs(30);
        loop {
            if health_ok(addr).await {
                times.push(t0.elapsed());
                break;
            }
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("swarmbridge serve exited during start-up: {status}");
            }
            anyhow::ensure!(Instant::now() < deadline, "no 200 from /health within 30 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.stop().await?;
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    let all: Vec<String> = times.iter().map(|t| format!("{:.0}", ms(*t))).collect();
    row(
        "startup",
        "spawn to first 200 from /health, fresh directory",
        &format!(
            "median {:.0} ms, max {:.0} ms",
            ms(median),
            ms(times[times.len() - 1])
        ),
        &format!("{runs} runs (ms, sorted): {}", all.join(", ")),
    );
    Ok(())
}
