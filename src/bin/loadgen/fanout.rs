//! `loadgen fanout`: open-loop broadcast fan-out.
//!
//! One publisher sends broadcasts at a fixed offered rate (a steady
//! schedule, not a number kept in flight) for a few seconds; every other
//! connection reads, timestamps and acknowledges every 100th event. A step
//! is clean when every receiver got every broadcast of the step, the p99
//! delivery latency is at most 100 ms, no receiver was dropped and the
//! server accepted every broadcast. The rate doubles until a step is not
//! clean, then bisects between the last clean and the first unclean rate.
//! Each frame carries its *scheduled* send time, so a server (or a
//! generator) that falls behind shows it in the latency, as it should in
//! an open-loop measurement.
//!
//! The same generator drives swarmbridge, the bare tokio-tungstenite server
//! and the Node `ws` server one after the other in one invocation.

use crate::bare::{spawn_bare, spawn_node};
use crate::common::{
    frame_seq, hello, hello_many, now_us, registry, row, spawn_swarmbridge, AgentGroup, Samples,
    Server, Ws,
};
use clap::ValueEnum;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A server the fan-out benchmark can drive.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum FanoutTarget {
    /// `swarmbridge serve` (durable broadcasts, receivers ack).
    Swarmbridge,
    /// `loadgen bare-server`: tokio-tungstenite and a broadcast channel.
    Bare,
    /// `node benches/node-ws-broadcast.js` (needs `ws` installed).
    Node,
}

impl FanoutTarget {
    fn label(self) -> &'static str {
        match self {
            FanoutTarget::Swarmbridge => "swarmbridge",
            FanoutTarget::Bare => "bare tokio-tungstenite",
            FanoutTarget::Node => "Node ws",
        }
    }
}

/// The knobs of one fan-out run.
pub struct FanoutPlan {
    /// The swarmbridge binary.
    pub bin: PathBuf,
    /// Receiver counts to measure, each against every target.
    pub conns: Vec<usize>,
    /// Targets, measured in this order for each receiver count.
    pub targets: Vec<FanoutTarget>,
    /// Seconds of publishing per step.
    pub step_s: f64,
    /// First offered rate, in deliveries per second.
    pub start_deliveries: f64,
    /// Stop doubling beyond this many deliveries per second.
    pub max_deliveries: f64,
    /// Bisection steps after the first unclean rate.
    pub refine: u32,
    /// Bytes of text in each broadcast.
    pub payload: usize,
    /// Receivers acknowledge every this many events.
    pub ack_every: u64,
    /// Largest clean p99, in milliseconds.
    pub p99_limit_ms: f64,
    /// The Node reference server's script.
    pub node_script: PathBuf,
    /// `NODE_PATH` for it (the `node_modules` holding `ws`).
    pub node_path: Option<PathBuf>,
}

/// How a dropped receiver comes back.
#[derive(Clone)]
enum Rejoin {
    Agent(String),
    Subscriber,
}

/// What one receiver saw during the current step.
#[derive(Default)]
struct ReceiverState {
    delivered: AtomicU64,
    dropped: AtomicU64,
    samples: Mutex<Vec<u32>>,
}

/// State every receiver reads.
struct Shared {
    /// Frames of other steps are late arrivals and are not counted.
    step: AtomicU32,
    /// Every text frame any receiver read, to see when traffic stops.
    frames: AtomicU64,
    stop: CancellationToken,
}

/// Parses the `@@step:scheduled_us@@` marker the publisher puts in each text.
fn marker(text: &str) -> Option<(u32, u64)> {
    let start = text.find("@@")? + 2;
    let rest = &text[start..];
    let colon = rest.find(':')?;
    let end = rest.find("@@")?;
    let step = rest[..colon].parse().ok()?;
    let ts = rest.get(colon + 1..end)?.parse().ok()?;
    Some((step, ts))
}

async fn rejoin(addr: SocketAddr, how: &Rejoin, last_seq: u64) -> anyhow::Result<Ws> {
    match how {
        Rejoin::Agent(token) => {
            let resume = (last_seq > 0).then_some(last_seq);
            Ok(hello(addr, token, resume).await?.0)
        }
        Rejoin::Subscriber => {
            let mut ws = crate::common::connect(addr).await?;
            ws.send(Message::Text("sub".into())).await?;
            Ok(ws)
        }
    }
}

async fn receive(
    mut ws: Ws,
    me: Arc<ReceiverState>,
    shared: Arc<Shared>,
    addr: SocketAddr,
    how: Rejoin,
    ack_every: u64,
) {
    let mut events: u64 = 0;
    let mut last_seq: u64 = 0;
    // One registration with the token for the whole run, not one per frame.
    let stop = shared.stop.clone().cancelled_owned();
    tokio::pin!(stop);
    loop {
        let m = tokio::select! {
            _ = &mut stop => return,
            m = ws.next() => m,
        };
        match m {
            Some(Ok(Message::Text(t))) => {
                shared.frames.fetch_add(1, Ordering::Relaxed);
                if let Some(seq) = frame_seq(&t) {
                    last_seq = seq;
                    events += 1;
                    if events.is_multiple_of(ack_every) {
                        let ack = json!({"type":"ack","seq":seq}).to_string();
                        // A failed send shows as a closed stream on the next read.
                        let _ = ws.send(Message::Text(ack.into())).await;
                    }
                }
                if let Some((step, ts)) = marker(&t) {
                    if step == shared.step.load(Ordering::Acquire) {
                        let lat = now_us().saturating_sub(ts).min(u32::MAX as u64) as u32;
                        me.delivered.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut s) = me.samples.lock() {
                            s.push(lat);
                        }
                    }
                }
            }
            Some(Ok(_)) => {}
            _ => {
                me.dropped.fetch_add(1, Ordering::Relaxed);
                loop {
                    if shared.stop.is_cancelled() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Ok(fresh) = rejoin(addr, &how, last_seq).await {
                        ws = fresh;
                        break;
                    }
                }
            }
        }
    }
}

/// Counts the publisher's acknowledgements and errors.
#[derive(Default)]
struct PublisherState {
    oks: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

async fn read_publisher(
    mut rx: futures_util::stream::SplitStream<Ws>,
    me: Arc<PublisherState>,
    stop: CancellationToken,
) {
    let stop = stop.cancelled_owned();
    tokio::pin!(stop);
    loop {
        let m = tokio::select! {
            _ = &mut stop => return,
            m = rx.next() => m,
        };
        match m {
            Some(Ok(Message::Text(t))) => {
                // The publisher (an agent) also receives its own broadcasts.
                if t.contains("\"type\":\"event\"") {
                    continue;
                }
                let kind = if t.as_str() == "ok" {
                    Some("ok".to_string())
                } else {
                    serde_json::from_str::<serde_json::Value>(&t)
                        .ok()
                        .and_then(|v| v["type"].as_str().map(str::to_string))
                };
                if kind.as_deref() == Some("ok") {
                    me.oks.fetch_add(1, Ordering::Relaxed);
                } else {
                    me.errors.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut first) = me.first_error.lock() {
                        first.get_or_insert_with(|| t.to_string());
                    }
                }
            }
            Some(Ok(_)) => {}
            _ => {
                me.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = me.first_error.lock() {
                    first.get_or_insert_with(|| "publisher connection closed".into());
                }
                return;
            }
        }
    }
}

/// Subscribers registered for every fan-out run (and `idle`), whatever the
/// number that connects, so one cached set serves every receiver count;
/// agents that stay offline cost a broadcast nothing (one event row).
pub const REGISTERED_SUBSCRIBERS: usize = 10_000;

/// The agents a fan-out run with `conns` receivers needs: `sub-*`
/// subscribers and one `admin` publisher.
pub fn roster(conns: usize) -> [AgentGroup<'static>; 2] {
    [
        AgentGroup {
            prefix: "sub-",
            count: conns.max(REGISTERED_SUBSCRIBERS),
            role: "agent",
        },
        AgentGroup {
            prefix: "pub-",
            count: 1,
            role: "admin",
        },
    ]
}

/// One connected target with its receivers running.
struct Rig {
    server: Server,
    target: FanoutTarget,
    receivers: Vec<Arc<ReceiverState>>,
    shared: Arc<Shared>,
    sink: SplitSink<Ws, Message>,
    publisher: Arc<PublisherState>,
    pad: String,
}

/// What one step at one offered rate gave.
#[derive(Clone)]
struct StepResult {
    broadcasts_per_s: f64,
    deliveries_per_s: f64,
    sent: u64,
    missing: u64,
    dropped: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    clean: bool,
}

impl StepResult {
    fn describe(&self) -> String {
        format!(
            "{:.0} deliveries/s ({:.1} broadcasts/s, {} sent): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} missing, {} dropped, {} errors",
            self.deliveries_per_s,
            self.broadcasts_per_s,
            self.sent,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.missing,
            self.dropped,
            self.errors
        )
    }
}

impl Rig {
    async fn start(plan: &FanoutPlan, target: FanoutTarget, conns: usize) -> anyhow::Result<Rig> {
        let shared = Arc::new(Shared {
            step: AtomicU32::new(0),
            frames: AtomicU64::new(0),
            stop: CancellationToken::new(),
        });
        let (server, subs, how, publisher) = match target {
            FanoutTarget::Swarmbridge => {
                let (reg, tokens) = registry(&plan.bin, &roster(conns)).await?;
                let server = spawn_swarmbridge(&plan.bin, reg.dir, &reg.db).await?;
                let subs = hello_many(server.addr, &tokens[0][..conns]).await?;
                let publisher = hello(server.addr, &tokens[1][0], None).await?.0;
                let how: Vec<Rejoin> = tokens[0][..conns]
                    .iter()
                    .cloned()
                    .map(Rejoin::Agent)
                    .collect();
                (server, subs, how, publisher)
            }
            FanoutTarget::Bare | FanoutTarget::Node => {
                let server = if target == FanoutTarget::Bare {
                    spawn_bare().await?
                } else {
                    spawn_node(&plan.node_script, plan.node_path.as_deref())
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "Node reference server: {e} (is `ws` installed? see --node-path / LOADGEN_NODE_PATH)"
                            )
                        })?
                };
                let subs = subscribe_many(server.addr, conns).await?;
                let mut publisher = crate::common::connect(server.addr).await?;
                publisher.send(Message::Text("pub".into())).await?;
                (server, subs, vec![Rejoin::Subscriber; conns], publisher)
            }
        };
        let mut receivers = Vec::with_capacity(conns);
        for (ws, how) in subs.into_iter().zip(how) {
            let me = Arc::new(ReceiverState::default());
            receivers.push(me.clone());
            tokio::spawn(receive(
                ws,
                me,
                shared.clone(),
                server.addr,
                how,
                plan.ack_every,
            ));
        }
        let (sink, stream) = publisher.split();
        let publisher = Arc::new(PublisherState::default());
        tokio::spawn(read_publisher(
            stream,
            publisher.clone(),
            shared.stop.clone(),
        ));
        Ok(Rig {
            server,
            target,
            receivers,
            shared,
            sink,
            publisher,
            pad: "x".repeat(plan.payload.saturating_sub(32)),
        })
    }

    fn frame(&self, step: u32, ts: u64) -> String {
        let text = format!("@@{step}:{ts}@@{}", self.pad);
        match self.target {
            FanoutTarget::Swarmbridge => json!({"type":"broadcast","text":text}).to_string(),
            // The frame swarmbridge delivers for a broadcast, so the bytes
            // per delivery match.
            _ => json!({"type":"event","seq":1,"kind":"broadcast","at":"2026-11-25T00:00:00.000Z",
                        "data":{"from":"pub-0","text":text,"topic":null}})
            .to_string(),
        }
    }

    /// Publishes at `rate` broadcasts/s for `secs`, then waits for the
    /// deliveries (3 s at most) and judges the step.
    async fn step(&mut self, plan: &FanoutPlan, rate: f64) -> anyhow::Result<StepResult> {
        let step = self.shared.step.fetch_add(1, Ordering::AcqRel) + 1;
        for r in &self.receivers {
            r.delivered.store(0, Ordering::Relaxed);
            r.dropped.store(0, Ordering::Relaxed);
            if let Ok(mut s) = r.samples.lock() {
                s.clear();
            }
        }
        let oks0 = self.publisher.oks.load(Ordering::Relaxed);
        let errors0 = self.publisher.errors.load(Ordering::Relaxed);
        let total = ((rate * plan.step_s).round() as u64).max(1);
        let start = Instant::now();
        let wall0 = now_us();
        let mut sent: u64 = 0;
        while sent < total {
            let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
            while sent < due {
                let ts = wall0 + (sent as f64 * 1e6 / rate) as u64;
                let frame = self.frame(step, ts);
                self.sink.feed(Message::Text(frame.into())).await?;
                sent += 1;
            }
            self.sink.flush().await?;
            if sent < total {
                let next = start + Duration::from_secs_f64(sent as f64 / rate);
                tokio::time::sleep_until(next.into()).await;
            }
        }
        let conns = self.receivers.len() as u64;
        let drain_until = Instant::now() + Duration::from_secs(3);
        loop {
            let got: u64 = self
                .receivers
                .iter()
                .map(|r| r.delivered.load(Ordering::Relaxed))
                .sum();
            let oks = self.publisher.oks.load(Ordering::Relaxed) - oks0;
            if (got >= sent * conns && oks >= sent) || Instant::now() >= drain_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Frames still arriving after this belong to a finished step.
        self.shared.step.fetch_add(1, Ordering::AcqRel);
        let mut missing = 0;
        let mut dropped = 0;
        let mut all = Samples::default();
        for r in &self.receivers {
            missing += sent.saturating_sub(r.delivered.load(Ordering::Relaxed));
            dropped += r.dropped.load(Ordering::Relaxed);
            if let Ok(mut s) = r.samples.lock() {
                all.0.append(&mut s);
            }
        }
        let oks = self.publisher.oks.load(Ordering::Relaxed) - oks0;
        let errors =
            self.publisher.errors.load(Ordering::Relaxed) - errors0 + sent.saturating_sub(oks);
        if errors > 0 {
            if let Ok(first) = self.publisher.first_error.lock() {
                eprintln!(
                    "  publisher: {errors} broadcasts not acknowledged; first error: {}",
                    first.as_deref().unwrap_or("none (no reply)")
                );
            }
        }
        let p50_ms = all.pct_ms(0.5);
        let p99_ms = all.pct_ms(0.99);
        let max_ms = all.pct_ms(1.0);
        let clean = missing == 0 && dropped == 0 && errors == 0 && p99_ms <= plan.p99_limit_ms;
        if !clean {
            self.quiesce().await;
        }
        Ok(StepResult {
            broadcasts_per_s: rate,
            deliveries_per_s: rate * conns as f64,
            sent,
            missing,
            dropped,
            errors,
            p50_ms,
            p99_ms,
            max_ms,
            clean,
        })
    }

    /// After an unclean step, waits until the backlog has drained (no frame
    /// for one second; 60 s at most) so the next step starts level.
    async fn quiesce(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        let mut last = self.shared.frames.load(Ordering::Relaxed);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.shared.frames.load(Ordering::Relaxed);
            if now == last {
                return;
            }
            last = now;
        }
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.shared.stop.cancel();
        drop(self.sink);
        self.server.stop().await?;
        Ok(())
    }
}

async fn subscribe_many(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Ws>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let sem = sem.clone();
        handles.push(tokio::spawn(async move {
            let _slot = sem.acquire_owned().await?;
            let mut ws = crate::common::connect(addr).await?;
            ws.send(Message::Text("sub".into())).await?;
            Ok::<_, anyhow::Error>(ws)
        }));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await??);
    }
    Ok(out)
}

/// The highest clean step of one target at one receiver count, and the
/// first unclean one above it.
struct Ladder {
    best: Option<StepResult>,
    first_unclean: Option<StepResult>,
}

async fn climb(plan: &FanoutPlan, rig: &mut Rig, conns: usize) -> anyhow::Result<Ladder> {
    let label = rig.target.label();
    let mut best: Option<StepResult> = None;
    let mut unclean: Option<StepResult> = None;
    let mut rate = plan.start_deliveries / conns as f64;
    // Double while clean (or halve until clean when the first step is not).
    loop {
        let r = rig.step(plan, rate).await?;
        eprintln!(
            "  {label} {conns}: {} -> {}",
            r.describe(),
            if r.clean { "clean" } else { "NOT clean" }
        );
        if r.clean {
            best = Some(r);
            if unclean.is_some() || rate * 2.0 * conns as f64 > plan.max_deliveries {
                break;
            }
            rate *= 2.0;
        } else {
            let descending = best.is_none();
            unclean = Some(r);
            if !descending || rate / 2.0 < 0.2 {
                break;
            }
            rate /= 2.0;
        }
    }
    if let (Some(lo), Some(hi)) = (&best, &unclean) {
        let (mut lo_rate, mut hi_rate) = (lo.broadcasts_per_s, hi.broadcasts_per_s);
        if lo_rate < hi_rate {
            for _ in 0..plan.refine {
                let mid = (lo_rate * hi_rate).sqrt();
                let r = rig.step(plan, mid).await?;
                eprintln!(
                    "  {label} {conns}: {} -> {}",
                    r.describe(),
                    if r.clean { "clean" } else { "NOT clean" }
                );
                if r.clean {
                    lo_rate = mid;
                    best = Some(r);
                } else {
                    hi_rate = mid;
                    unclean = Some(r);
                }
            }
        }
    }
    Ok(Ladder {
        best,
        first_unclean: unclean,
    })
}

/// Runs the whole plan and prints one table row per target and receiver
/// count, plus swarmbridge's ratios to the references.
pub async fn fanout(plan: &FanoutPlan) -> anyhow::Result<()> {
    for &conns in &plan.conns {
        let mut best_by_target = Vec::new();
        for &target in &plan.targets {
            eprintln!("fanout: {} with {conns} receivers", target.label());
            let mut rig = Rig::start(plan, target, conns).await?;
            let ladder = climb(plan, &mut rig, conns).await;
            rig.finish().await?;
            let ladder = ladder?;
            let figure = match &ladder.best {
                Some(b) => format!(
                    "{:.0} deliveries/s ({:.1} broadcasts/s), p50 {:.1} ms, p99 {:.1} ms",
                    b.deliveries_per_s, b.broadcasts_per_s, b.p50_ms, b.p99_ms
                ),
                None => "no clean rate".into(),
            };
            let detail = match &ladder.first_unclean {
                Some(u) => format!("next step not clean: {}", u.describe()),
                None => "stopped at --max-deliveries".into(),
            };
            row(
                "fanout",
                &format!("{}, {conns} agents, highest clean rate", target.label()),
                &figure,
                &detail,
            );
            best_by_target.push((target, ladder.best.map(|b| b.deliveries_per_s)));
        }
        let sb = best_by_target
            .iter()
            .find(|(t, _)| *t == FanoutTarget::Swarmbridge)
            .and_then(|(_, r)| *r);
        for (target, rate) in &best_by_target {
            if *target == FanoutTarget::Swarmbridge {
                continue;
            }
            if let (Some(sb), Some(rate)) = (sb, rate) {
                row(
                    "fanout",
                    &format!("swarmbridge / {}, {conns} agents", target.label()),
                    &format!("{:.2}×", sb / rate),
                    "same run, same generator",
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_gives_step_and_scheduled_time() {
        let text = r#"{"data":{"text":"@@7:1764480000123456@@xxxx"},"seq":3,"type":"event"}"#;
        assert_eq!(marker(text), Some((7, 1_764_480_000_123_456)));
        assert_eq!(marker("no marker here"), None);
        assert_eq!(marker("@@x:1@@"), None);
    }
}
