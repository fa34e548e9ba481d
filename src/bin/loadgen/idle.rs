//! `loadgen idle`: server memory per idle connected agent.

use crate::common::{hello_many, registry, row, rss_kib, spawn_swarmbridge};
use std::path::Path;
use std::time::{Duration, Instant};

/// Connects `conns` agents that then stay silent, and divides the growth of
/// the server's resident memory by their number (after a warm-up of ten
/// connections, so start-up allocations do not count).
pub async fn idle(bin: &Path, conns: usize) -> anyhow::Result<()> {
    let (reg, tokens) = registry(bin, &crate::fanout::roster(conns)).await?;
    let tokens = &tokens[0][..conns];
    let server = spawn_swarmbridge(bin, reg.dir, &reg.db).await?;
    let warm = hello_many(server.addr, &tokens[..10.min(conns)]).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(server.pid()).unwrap_or(0);
    let t0 = Instant::now();
    let held = hello_many(server.addr, tokens).await?;
    let connect_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(server.pid()).unwrap_or(0);
    let per_kib = after.saturating_sub(before) as f64 / conns as f64;
    row(
        "idle",
        &format!("memory per idle connection, {conns} agents"),
        &format!("{per_kib:.1} KiB"),
        &format!(
            "server RSS {} MiB -> {} MiB; connected in {connect_s:.1} s",
            before / 1024,
            after / 1024
        ),
    );
    drop(held);
    server.stop().await?;
    Ok(())
}
