//! `loadgen latency`: `status`, `task.get` and `msg.send` round trips at a
//! fixed offered rate (open loop).
//!
//! `conns` agents share the rate; each sends its requests on a fixed
//! schedule whatever the replies do, and a request's latency runs from its
//! scheduled send time to its reply, so a server that falls behind cannot
//! hide it. `msg.send` goes to the next agent, which reads the `message`
//! events and acknowledges every 100th.

use crate::common::{
    create_tasks, frame_seq, hello, registry, row, spawn_swarmbridge, AgentGroup, Samples, Ws,
};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

/// The requests measured, in order.
const KINDS: [&str; 3] = ["status", "task.get", "msg.send"];

fn request(kind: &str, n: u64, conn: usize, conns: usize, task_ids: &[i64]) -> Value {
    let id = format!("q{n}");
    match kind {
        "status" => json!({"type":"status","id":id}),
        "task.get" => {
            let task_id = task_ids[(n as usize * 7919 + conn) % task_ids.len()];
            json!({"type":"task.get","id":id,"task_id":task_id})
        }
        _ => {
            json!({"type":"msg.send","id":id,"to":format!("ask-{}", (conn + 1) % conns),"text":"latency probe"})
        }
    }
}

fn expected_reply(kind: &str) -> &'static str {
    match kind {
        "status" => "status",
        "task.get" => "task",
        _ => "ok",
    }
}

/// What one connection's reader collected.
struct Collected {
    samples: Samples,
    errors: u64,
    first_error: Option<String>,
}

/// Reads replies `q{n}` until all `total` came or the deadline passes.
async fn read_replies(
    mut rx: futures_util::stream::SplitStream<Ws>,
    tx: Arc<Mutex<SplitSink<Ws, Message>>>,
    start: Instant,
    interval: Duration,
    total: u64,
    expect: &'static str,
    deadline: Instant,
) -> anyhow::Result<(Collected, futures_util::stream::SplitStream<Ws>)> {
    let mut got = Collected {
        samples: Samples::default(),
        errors: 0,
        first_error: None,
    };
    let mut answered = 0;
    let mut events: u64 = 0;
    while answered < total {
        let Ok(m) = tokio::time::timeout_at(deadline.into(), rx.next()).await else {
            break;
        };
        let Some(m) = m else {
            anyhow::bail!("connection closed during the latency run")
        };
        let Message::Text(t) = m? else { continue };
        if let Some(at) = t.find("\"re\":\"q") {
            let digits = &t[at + 7..];
            let end = digits.find('"').unwrap_or(digits.len());
            let Ok(n) = digits[..end].parse::<u64>() else {
                continue;
            };
            answered += 1;
            let scheduled = start + interval * n as u32;
            got.samples
                .push(Instant::now().saturating_duration_since(scheduled));
            if !t.contains(&format!("\"type\":\"{expect}\"")) {
                got.errors += 1;
                got.first_error.get_or_insert_with(|| t.to_string());
            }
        } else if let Some(seq) = frame_seq(&t) {
            events += 1;
            if events.is_multiple_of(100) {
                let ack = json!({"type":"ack","seq":seq}).to_string();
                tx.lock().await.send(Message::Text(ack.into())).await?;
            }
        }
    }
    got.errors += total - answered;
    Ok((got, rx))
}

/// The agents this scenario needs: `count` askers and one operator.
pub fn roster(count: usize) -> [AgentGroup<'static>; 2] {
    [
        AgentGroup {
            prefix: "ask-",
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

/// Runs the scenario and prints one row per request kind.
pub async fn latency(
    bin: &Path,
    conns: usize,
    rate: f64,
    seconds: f64,
    tasks: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        conns >= 2,
        "--conns must be at least 2 (msg.send needs a peer)"
    );
    let (reg, tokens) = registry(bin, &roster(conns)).await?;
    let server = spawn_swarmbridge(bin, reg.dir, &reg.db).await?;
    let (mut op, _) = hello(server.addr, &tokens[1][0], None).await?;
    let (task_ids, newest_seq) = create_tasks(&mut op, tasks, 64).await?;
    drop(op);
    let mut links = Vec::with_capacity(conns);
    for token in &tokens[0] {
        let (ws, _) = hello(server.addr, token, Some(newest_seq)).await?;
        let (tx, rx) = ws.split();
        links.push((Arc::new(Mutex::new(tx)), rx));
    }
    let task_ids = Arc::new(task_ids);
    let per_conn_rate = rate / conns as f64;
    let interval = Duration::from_secs_f64(1.0 / per_conn_rate);
    let total = (per_conn_rate * seconds).round() as u64;
    for kind in KINDS {
        let start = Instant::now() + Duration::from_millis(100);
        let deadline = start + Duration::from_secs_f64(seconds + 5.0);
        let mut readers = Vec::with_capacity(conns);
        let mut senders = Vec::with_capacity(conns);
        for (conn, (tx, rx)) in links.drain(..).enumerate() {
            // Spread the connections' schedules over one interval.
            let offset = interval.mul_f64(conn as f64 / conns as f64);
            let start = start + offset;
            readers.push(tokio::spawn(read_replies(
                rx,
                tx.clone(),
                start,
                interval,
                total,
                expected_reply(kind),
                deadline,
            )));
            let task_ids = task_ids.clone();
            senders.push(tokio::spawn(async move {
                for n in 0..total {
                    tokio::time::sleep_until((start + interval * n as u32).into()).await;
                    let frame = request(kind, n, conn, conns, &task_ids).to_string();
                    tx.lock().await.send(Message::Text(frame.into())).await?;
                }
                Ok::<_, anyhow::Error>(tx)
            }));
        }
        let mut all = Samples::default();
        let mut errors = 0;
        let mut first_error = None;
        for (sender, reader) in senders.into_iter().zip(readers) {
            let tx = sender.await??;
            let (got, rx) = reader.await??;
            all.0.extend(got.samples.0);
            errors += got.errors;
            first_error = first_error.or(got.first_error);
            links.push((tx, rx));
        }
        let n = all.0.len();
        row(
            "latency",
            &format!("`{kind}` at {rate:.0} requests/s, open loop"),
            &format!(
                "p50 {:.3} ms, p99 {:.3} ms",
                all.pct_ms(0.5),
                all.pct_ms(0.99)
            ),
            &format!(
                "{n} replies over {conns} agents, max {:.1} ms, {errors} errors or missing{}",
                all.pct_ms(1.0),
                first_error
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            ),
        );
    }
    server.stop().await?;
    Ok(())
}
