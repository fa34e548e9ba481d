//! In-process fan-out of committed events to live connections, and presence.
//!
//! Each connection has one bounded queue; publishing never waits: a full
//! queue means the reader fell behind, and that connection alone is cut off
//! (it catches up later with `resume_from`). The frame of an event is
//! serialized once and the same bytes go to every recipient. The connection
//! table is a sharded map; no lock is held across an `.await`.

use crate::core::events::{CommittedEvent, EventSink};
use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One event on its way to one connection: a pointer to the frame every
/// recipient shares. One word, so the slots of a connection's queue (whose
/// first block of 32 tokio allocates when the connection registers) cost an
/// idle connection 256 bytes rather than 1.3 KB.
#[derive(Debug, Clone)]
pub struct Delivery(Arc<Framed>);

/// An event's sequence number and serialized frame.
#[derive(Debug)]
pub struct Framed {
    /// The event's sequence number (the writer skips what replay already sent).
    pub seq: i64,
    /// The serialized frame, shared by every recipient.
    pub frame: Utf8Bytes,
}

impl std::ops::Deref for Delivery {
    type Target = Framed;
    fn deref(&self) -> &Framed {
        &self.0
    }
}

/// Why the bus ended a connection: a WebSocket close code and reason.
#[derive(Debug, Clone, Copy)]
pub struct CloseReason {
    /// The close code (1008 revoked, 1013 too slow, 1001 shutdown).
    pub code: u16,
    /// Short text for the close frame.
    pub reason: &'static str,
}

/// The bus's handle on one live connection.
#[derive(Clone)]
struct ConnEntry {
    id: u64,
    tx: mpsc::Sender<Delivery>,
    capabilities: Arc<[String]>,
    cancel: CancellationToken,
    close: Arc<OnceLock<CloseReason>>,
}

impl ConnEntry {
    fn end(&self, reason: CloseReason) {
        let _ = self.close.set(reason);
        self.cancel.cancel();
    }
}

/// What a connection keeps after registering: its queue and the signal
/// that the bus ended it.
pub struct Registration {
    /// Connection id within this process.
    pub id: u64,
    /// Events for this connection, in `seq` order.
    pub rx: mpsc::Receiver<Delivery>,
    /// Cancelled when the bus ends the connection.
    pub cancel: CancellationToken,
    /// Why it was ended (set before `cancel` fires).
    pub close: Arc<OnceLock<CloseReason>>,
}

/// Counters of the fan-out path.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Event frames queued to connections.
    pub delivered: AtomicU64,
    /// Connections cut off because their queue was full.
    pub slow_disconnects: AtomicU64,
    /// Deliveries refused because the connection's queue was full (counted
    /// only on that slow path, so the fan-out stays one increment per delivery).
    pub dropped: AtomicU64,
    /// Events published.
    pub published: AtomicU64,
}

/// Live connections by agent name, and the observers of every event.
pub struct Bus {
    agents: DashMap<String, Vec<ConnEntry>>,
    connections: AtomicUsize,
    next_id: AtomicU64,
    observers: broadcast::Sender<CommittedEvent>,
    pacer: Pacer,
    /// Fan-out counters.
    pub stats: BusStats,
}

/// Coalescing of fan-outs: while [`Bus::run_pacer`] runs, events published
/// within `window` of the last fan-out wait for the end of that window and
/// go out together, so a busy connection is woken, and writes to its socket,
/// once per window instead of once per event. An event published after a
/// quiet spell goes out at once; the delay added is at most `window`, and
/// only when events come faster than one per window.
struct Pacer {
    window: Duration,
    running: AtomicBool,
    pending: Mutex<Vec<CommittedEvent>>,
    wake: Notify,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

/// Events an observer may fall behind before it loses some.
const OBSERVER_ROOM: usize = 4096;

const SLOW: CloseReason = CloseReason {
    code: 1013,
    reason: "too slow: send queue full; reconnect with resume_from",
};

impl Bus {
    /// An empty bus that fans every event out as it is published.
    pub fn new() -> Self {
        Bus::with_fanout_window(Duration::ZERO)
    }

    /// An empty bus that coalesces fan-outs within `window` while
    /// [`Bus::run_pacer`] runs (a zero window never waits).
    pub fn with_fanout_window(window: Duration) -> Self {
        let (observers, _) = broadcast::channel(OBSERVER_ROOM);
        Bus {
            agents: DashMap::new(),
            connections: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            observers,
            pacer: Pacer {
                window,
                running: AtomicBool::new(false),
                pending: Mutex::new(Vec::new()),
                wake: Notify::new(),
            },
            stats: BusStats::default(),
        }
    }

    /// Fans out published events, at most once per fan-out window, until
    /// `shutdown`; then fans out what is still pending and lets `publish`
    /// deliver directly again. Events keep their publish (`seq`) order: one
    /// task drains one queue.
    pub async fn run_pacer(self: Arc<Self>, shutdown: CancellationToken) {
        let pacer = &self.pacer;
        if pacer.window.is_zero() {
            return;
        }
        pacer.running.store(true, Ordering::SeqCst);
        let mut last = Instant::now() - pacer.window;
        loop {
            tokio::select! {
                _ = pacer.wake.notified() => {}
                _ = shutdown.cancelled() => break,
            }
            let due = last + pacer.window;
            if due > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            last = Instant::now();
            self.fan_out_pending();
        }
        // Stop under the lock, so a publisher that waited for it delivers
        // directly only after what was pending went out.
        let mut pending = pacer.pending.lock().unwrap_or_else(|p| p.into_inner());
        pacer.running.store(false, Ordering::SeqCst);
        let rest = std::mem::take(&mut *pending);
        self.fan_out(&rest);
    }

    fn fan_out_pending(&self) {
        let batch =
            std::mem::take(&mut *self.pacer.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if !batch.is_empty() {
            self.fan_out(&batch);
        }
    }

    /// Adds a connection of `agent` with a queue of `queue` events.
    pub fn register(&self, agent: &str, capabilities: Vec<String>, queue: usize) -> Registration {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let close = Arc::new(OnceLock::new());
        let entry = ConnEntry {
            id,
            tx,
            capabilities: capabilities.into(),
            cancel: cancel.clone(),
            close: close.clone(),
        };
        self.agents
            .entry(agent.to_string())
            .or_default()
            .push(entry);
        self.connections.fetch_add(1, Ordering::Relaxed);
        Registration {
            id,
            rx,
            cancel,
            close,
        }
    }

    /// Removes a connection; the agent goes offline with its last one.
    pub fn unregister(&self, agent: &str, id: u64) {
        let mut removed = false;
        self.agents.remove_if_mut(agent, |_, conns| {
            let before = conns.len();
            conns.retain(|c| c.id != id);
            removed = conns.len() < before;
            conns.is_empty()
        });
        if removed {
            self.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Ends every connection of `agent` with this close code.
    pub fn disconnect_agent(&self, agent: &str, code: u16, reason: &'static str) {
        if let Some(conns) = self.agents.get(agent) {
            for c in conns.iter() {
                c.end(CloseReason { code, reason });
            }
        }
    }

    /// Whether `agent` has a connection here.
    pub fn is_online(&self, agent: &str) -> bool {
        self.agents.contains_key(agent)
    }

    /// Distinct agents connected here.
    pub fn agents_online(&self) -> usize {
        self.agents.len()
    }

    /// Open agent connections here.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Each connected agent with the union of its connections' capabilities
    /// (for insights: which queues someone online can serve).
    pub fn online_capabilities(&self) -> Vec<(String, Vec<String>)> {
        self.agents
            .iter()
            .map(|e| {
                let mut caps: Vec<String> = Vec::new();
                for c in e.value() {
                    for cap in c.capabilities.iter() {
                        if !caps.contains(cap) {
                            caps.push(cap.clone());
                        }
                    }
                }
                (e.key().clone(), caps)
            })
            .collect()
    }

    /// The fullest send queue of each connected agent: (agent, events
    /// queued, queue size), for the `queue_full` alert.
    pub fn send_queue_fill(&self) -> Vec<(String, usize, usize)> {
        self.agents
            .iter()
            .filter_map(|e| {
                e.value()
                    .iter()
                    .map(|c| {
                        let room = c.tx.max_capacity();
                        (room - c.tx.capacity(), room)
                    })
                    .max()
                    .map(|(used, room)| (e.key().clone(), used, room))
            })
            .collect()
    }

    /// Events the slowest observer (announcer, dashboard stream) has not
    /// read yet, and how many it may fall behind before it loses some.
    pub fn event_backlog(&self) -> (usize, usize) {
        (self.observers.len(), OBSERVER_ROOM)
    }

    /// A receiver of every committed event (for bridges and the dashboard);
    /// a receiver that lags loses events and is told so by the channel.
    pub fn observe(&self) -> broadcast::Receiver<CommittedEvent> {
        self.observers.subscribe()
    }

    fn deliver(&self, conn: &ConnEntry, d: Delivery) {
        match conn.tx.try_send(d) {
            Ok(()) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                if !conn.cancel.is_cancelled() {
                    self.stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(conn = conn.id, "send queue full; closing slow connection");
                }
                conn.end(SLOW);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

impl EventSink for Bus {
    fn publish(&self, events: &[CommittedEvent]) {
        if self.pacer.running.load(Ordering::SeqCst) {
            let mut pending = self.pacer.pending.lock().unwrap_or_else(|p| p.into_inner());
            // re-checked under the lock: the pacer drains once more after it stops
            if self.pacer.running.load(Ordering::SeqCst) {
                pending.extend_from_slice(events);
                drop(pending);
                self.pacer.wake.notify_one();
                return;
            }
        }
        self.fan_out(events);
    }
}

impl Bus {
    /// Hands each event to its live recipients and the observers, in order.
    fn fan_out(&self, events: &[CommittedEvent]) {
        for ev in events {
            self.stats.published.fetch_add(1, Ordering::Relaxed);
            let d = Delivery(Arc::new(Framed {
                seq: ev.seq,
                frame: Utf8Bytes::from(ev.frame.to_string()),
            }));
            let aud = &ev.audience;
            if aud.all || aud.requires.is_some() {
                for conns in self.agents.iter() {
                    for c in conns.iter() {
                        if aud.includes(conns.key(), &c.capabilities) {
                            self.deliver(c, d.clone());
                        }
                    }
                }
            } else {
                for name in &aud.agents {
                    if let Some(conns) = self.agents.get(name) {
                        for c in conns.iter() {
                            self.deliver(c, d.clone());
                        }
                    }
                }
            }
            if self.observers.receiver_count() > 0 {
                let _ = self.observers.send(ev.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::{Audience, EventKind};

    fn ev(seq: i64, audience: Audience) -> CommittedEvent {
        CommittedEvent::new(seq, EventKind::Broadcast, 0, audience, "{}")
    }

    #[test]
    fn targeted_event_reaches_only_its_agent() {
        let bus = Bus::new();
        let mut a = bus.register("a", vec![], 8);
        let mut b = bus.register("b", vec![], 8);
        bus.publish(&[ev(1, Audience::agents(["a"]))]);
        assert_eq!(a.rx.try_recv().unwrap().seq, 1);
        assert!(b.rx.try_recv().is_err());
    }

    #[test]
    fn full_queue_cuts_off_only_the_slow_connection() {
        let bus = Bus::new();
        let slow = bus.register("slow", vec![], 1);
        let mut fast = bus.register("fast", vec![], 8);
        bus.publish(&[ev(1, Audience::everyone()), ev(2, Audience::everyone())]);
        assert!(slow.cancel.is_cancelled());
        assert_eq!(slow.close.get().unwrap().code, 1013);
        assert!(!fast.cancel.is_cancelled());
        assert_eq!(fast.rx.try_recv().unwrap().seq, 1);
        assert_eq!(fast.rx.try_recv().unwrap().seq, 2);
    }

    #[tokio::test]
    async fn a_pacer_coalesces_events_in_order_and_delivers_directly_once_stopped() {
        let bus = Arc::new(Bus::with_fanout_window(Duration::from_millis(300)));
        let mut a = bus.register("a", vec![], 64);
        let shutdown = CancellationToken::new();
        let pacer = tokio::spawn(bus.clone().run_pacer(shutdown.clone()));
        while !bus.pacer.running.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        // the first event after a quiet spell goes out at once
        bus.publish(&[ev(1, Audience::everyone())]);
        let first = tokio::time::timeout(Duration::from_secs(5), a.rx.recv()).await;
        assert_eq!(first.unwrap().unwrap().seq, 1);
        // the next ones, within the window, wait for its end and come together
        bus.publish(&[ev(2, Audience::everyone())]);
        bus.publish(&[ev(3, Audience::everyone()), ev(4, Audience::everyone())]);
        assert!(
            a.rx.try_recv().is_err(),
            "delivered before the window ended"
        );
        let second = tokio::time::timeout(Duration::from_secs(5), a.rx.recv()).await;
        assert_eq!(second.unwrap().unwrap().seq, 2);
        assert_eq!(a.rx.try_recv().unwrap().seq, 3);
        assert_eq!(a.rx.try_recv().unwrap().seq, 4);
        shutdown.cancel();
        pacer.await.unwrap();
        bus.publish(&[ev(5, Audience::everyone())]);
        assert_eq!(a.rx.try_recv().unwrap().seq, 5);
    }

    #[test]
    fn presence_follows_registrations() {
        let bus = Bus::new();
        let r1 = bus.register("a", vec![], 8);
        let r2 = bus.register("a", vec![], 8);
        assert_eq!(bus.agents_online(), 1);
        bus.unregister("a", r1.id);
        assert!(bus.is_online("a"));
        bus.unregister("a", r2.id);
        assert!(!bus.is_online("a"));
        assert_eq!(bus.connections(), 0);
    }
}
