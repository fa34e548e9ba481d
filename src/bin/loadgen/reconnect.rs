//! `loadgen reconnect`: catching up after downtime (issue 17).
//!
//! `agents` agents connect once and leave; an operator agent then creates
//! `events` tasks through the protocol, so each absent agent has that many
//! `task.created` events waiting. All agents then reconnect at once with a
//! plain `hello` (no `resume_from`: replay after the last ack). Each one
//! reads its replay, acknowledges every 100th event, checks that every
//! `seq` is strictly above the previous one (so no duplicate and no
//! reordering), and meanwhile sends a `ping` or `status` request every
//! `probe_ms`, timing the replies. Reported: time until each agent has all
//! its events (p50/p99/max), events per second over the whole catch-up,
//! and the latency of the requests sent during it.

use crate::common::{
    create_tasks, frame_seq, hello, hello_many, registry, row, spawn_swarmbridge, AgentGroup,
    Samples,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// What one reconnecting agent saw.
struct CatchUp {
    /// From the common start to the last expected event; None if it never came.
    caught_up: Option<Duration>,
    /// `task.created` events received.
    events: u64,
    /// Events whose `seq` was not above the one before.
    out_of_order: u64,
    /// Latencies of the requests that were answered.
    answered: Samples,
    /// Requests sent and never answered, with how long they had waited.
    unanswered: Vec<Duration>,
}

async fn catch_up(
    addr: SocketAddr,
    token: String,
    expected: u64,
    start: Instant,
    deadline: Instant,
    probe: Duration,
) -> anyhow::Result<CatchUp> {
    let (mut ws, _) = hello(addr, &token, None).await?;
    let mut seen = CatchUp {
        caught_up: None,
        events: 0,
        out_of_order: 0,
        answered: Samples::default(),
        unanswered: Vec::new(),
    };
    let mut last_seq = 0u64;
    let mut all_events = 0u64;
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let mut next_probe = 0u64;
    let mut ticker = tokio::time::interval(probe);
    let mut drain_until: Option<Instant> = None;
    loop {
        let until = drain_until.unwrap_or(deadline).min(deadline);
        if drain_until.is_some() && pending.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => break,
            _ = ticker.tick(), if drain_until.is_none() => {
                let kind = if next_probe.is_multiple_of(2) { "ping" } else { "status" };
                let frame = json!({"type":kind,"id":format!("p{next_probe}")}).to_string();
                pending.insert(next_probe, Instant::now());
                next_probe += 1;
                ws.send(Message::Text(frame.into())).await?;
            }
            m = ws.next() => {
                let Some(m) = m else { anyhow::bail!("connection closed during catch-up") };
                let Message::Text(t) = m? else { continue };
                if let Some(at) = t.find("\"re\":\"p") {
                    let digits = &t[at + 7..];
                    let end = digits.find('"').unwrap_or(digits.len());
                    if let Some(sent) = digits[..end].parse::<u64>().ok().and_then(|n| pending.remove(&n)) {
                        seen.answered.push(sent.elapsed());
                    }
                } else if let Some(seq) = frame_seq(&t) {
                    if seq <= last_seq {
                        seen.out_of_order += 1;
                    }
                    last_seq = last_seq.max(seq);
                    all_events += 1;
                    if all_events.is_multiple_of(100) {
                        let ack = json!({"type":"ack","seq":seq}).to_string();
                        ws.send(Message::Text(ack.into())).await?;
                    }
                    if t.contains("\"kind\":\"task.created\"") {
                        seen.events += 1;
                        if seen.events == expected {
                            seen.caught_up = Some(start.elapsed());
                            // Let the requests still in flight come back.
                            drain_until = Some(Instant::now() + Duration::from_secs(5));
                        }
                    }
                }
            }
        }
    }
    seen.unanswered = pending.values().map(|sent| sent.elapsed()).collect();
    Ok(seen)
}

/// The agents this scenario needs: `count` agents that go away and one operator.
pub fn roster(count: usize) -> [AgentGroup<'static>; 2] {
    [
        AgentGroup {
            prefix: "away-",
            count,
            role: "agent",
        },
        AgentGroup {
            prefix: "op-",
            count: 1,
            role: "operator",
        },
    ]
}

/// Runs the scenario and prints its rows.
pub async fn reconnect(
    bin: &Path,
    agents: usize,
    events: usize,
    timeout: Duration,
    probe: Duration,
) -> anyhow::Result<()> {
    let (reg, tokens) = registry(bin, &roster(agents)).await?;
    let server = spawn_swarmbridge(bin, reg.dir, &reg.db).await?;
    // Every agent has been connected once, then leaves.
    drop(hello_many(server.addr, &tokens[0]).await?);
    let (mut op, _) = hello(server.addr, &tokens[1][0], None).await?;
    let t_create = Instant::now();
    create_tasks(&mut op, events, 64).await?;
    let create_s = t_create.elapsed().as_secs_f64();
    drop(op);
    eprintln!("reconnect: {events} tasks created in {create_s:.1} s while {agents} agents were away; reconnecting them");
    let start = Instant::now();
    let deadline = start + timeout;
    let handles: Vec<_> = tokens[0]
        .iter()
        .map(|token| {
            tokio::spawn(catch_up(
                server.addr,
                token.clone(),
                events as u64,
                start,
                deadline,
                probe,
            ))
        })
        .collect();
    let mut results = Vec::with_capacity(agents);
    for h in handles {
        results.push(h.await??);
    }
    server.stop().await?;

    let mut caught = Samples::default();
    let mut received = 0u64;
    let mut out_of_order = 0u64;
    let mut answered = Samples::default();
    let mut unanswered = Vec::new();
    for r in &mut results {
        if let Some(d) = r.caught_up {
            caught.push(d);
        }
        received += r.events;
        out_of_order += r.out_of_order;
        answered.0.append(&mut r.answered.0);
        unanswered.append(&mut r.unanswered);
    }
    let done = caught.0.len();
    let last = if done == agents {
        caught.pct_ms(1.0) / 1000.0
    } else {
        timeout.as_secs_f64()
    };
    let label = format!("{agents} agents × {events} events");
    let figure = if done == agents {
        format!(
            "caught up: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
            caught.pct_ms(0.5) / 1000.0,
            caught.pct_ms(0.99) / 1000.0,
            caught.pct_ms(1.0) / 1000.0
        )
    } else {
        format!(
            "{done} of {agents} caught up within {:.0} s",
            timeout.as_secs_f64()
        )
    };
    row(
        "reconnect",
        &format!("{label}: time to caught-up"),
        &figure,
        &format!(
            "{received} of {} events received, {:.0} events/s; seq not strictly increasing: {out_of_order}; backlog created in {create_s:.1} s",
            agents as u64 * events as u64,
            received as f64 / last
        ),
    );
    let longest_wait = unanswered.iter().max().copied().unwrap_or_default();
    row(
        "reconnect",
        &format!("{label}: `ping`/`status` during the replay"),
        &if answered.0.is_empty() {
            "none answered".to_string()
        } else {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                answered.pct_ms(0.5),
                answered.pct_ms(0.99),
                answered.pct_ms(1.0)
            )
        },
        &format!(
            "{} answered, {} never answered (longest wait {:.1} s); one request per {} ms per agent",
            answered.0.len(),
            unanswered.len(),
            longest_wait.as_secs_f64(),
            probe.as_millis()
        ),
    );
    anyhow::ensure!(
        out_of_order == 0,
        "an agent received a seq out of order or twice"
    );
    Ok(())
}
