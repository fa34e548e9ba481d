//! One agent connection: the `hello` handshake, then one loop that reads
//! requests, writes replies, replays missed events page by page (beside
//! the requests, see [`super::replay`]) and then drains the connection's
//! event queue. A connection that cannot keep up is cut off by
//! the bus without slowing anyone else.

use super::frames::{self, ClientFrame};
use super::replay::ReplayStream;
use crate::bus::{CloseReason, Delivery};
use crate::core::command::Command;
use crate::core::error::CoreError;
use crate::core::model::{Agent, Caller, Platform};
use crate::core::replay::ResumeAsk;
use crate::dispatch::Admitted;
use crate::gateway::AppState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Events written per flush when a queue has several waiting.
const WRITE_BATCH: usize = 64;
/// Frames produced off the loop that may wait to be written.
const SIDE_QUEUE: usize = 256;
/// Most frames read in one go from one connection.
const MAX_BURST: usize = 64;
/// Reasoning calls one connection may have in flight.
const MAX_REASON_JOBS: usize = 8;
/// How long the close frame may wait behind a slow reader's backlog.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;
type WsRead = Result<Message, axum::Error>;

/// Why the loop ended; the close frame to send, if any.
enum Stop {
    Close(u16, String),
    Gone,
}

fn stop(code: u16, reason: impl Into<String>) -> Stop {
    Stop::Close(code, reason.into())
}

/// The close the bus asked for when it ended a connection (1013 too slow,
/// 1008 revoked).
fn bus_close(close: &OnceLock<CloseReason>) -> Stop {
    let r = close.get().copied().unwrap_or(CloseReason {
        code: 1008,
        reason: "closed",
    });
    stop(r.code, r.reason)
}

/// Serves one upgraded WebSocket until it closes.
pub async fn run(socket: WebSocket, app: AppState, peer: Option<std::net::IpAddr>) {
    let (sink, stream) = socket.split();
    let mut conn = Conn {
        sink,
        stream,
        idle: Duration::from_secs(app.cfg.limits.heartbeat_s * 3),
        app,
        last_sent: 0,
        bad_in_a_row: 0,
        cancel: CancellationToken::new(),
        close: Arc::new(OnceLock::new()),
        jobs: JoinSet::new(),
        side_tx: None,
        side_rx: None,
        peer,
    };
    let session = uuid::Uuid::new_v4();
    let (agent, hello) = match conn.handshake().await {
        Ok(v) => v,
        Err(s) => {
            conn.finish(s).await;
            return;
        }
    };
    let span = tracing::info_span!("ws", agent = %agent.name, session = %session);
    async move {
        let outcome = conn.serve(agent.clone(), hello, session).await;
        conn.finish(outcome).await;
    }
    .instrument(span)
    .await;
}

/// What `hello` asked for besides the token.
struct Hello {
    re: Option<String>,
    capabilities: Option<Vec<String>>,
    resume_from: Result<Option<i64>, String>,
    replay_limit: Result<Option<i64>, String>,
}

struct Conn {
    sink: Sink,
    stream: Stream,
    app: AppState,
    idle: Duration,
    /// Highest event `seq` written; live events at or below it were replayed.
    last_sent: i64,
    bad_in_a_row: u32,
    /// Fired by the bus when it ends this connection (revoked, too slow).
    cancel: CancellationToken,
    /// Why the bus ended it.
    close: Arc<OnceLock<CloseReason>>,
    /// Reasoning calls in flight; aborted when the connection ends.
    jobs: JoinSet<()>,
    /// Frames produced off the loop (reasoning deltas and results); made
    /// on the first reasoning request, so idle connections do not carry it.
    side_tx: Option<mpsc::Sender<String>>,
    side_rx: Option<mpsc::Receiver<String>>,
    /// The client's address (failed `hello`s count against it).
    peer: Option<std::net::IpAddr>,
}

/// One frame of a burst, read and sorted once.
enum BurstItem {
    /// A command that may run together with its neighbours (not `reason`).
    Plain(Option<String>, Command),
    /// Anything else: served alone, in order.
    Other(Message),
    /// A text frame that parsed, but is not a plain command.
    Parsed(Option<String>, ClientFrame),
}

impl Conn {
    /// Writes frames, giving up when the connection is ended, the server
    /// shuts down, or the peer does not take them within the idle period.
    async fn write(&mut self, frames: Vec<Message>) -> Result<(), Stop> {
        let sink = &mut self.sink;
        let work = async move {
            for f in frames {
                sink.feed(f).await?;
            }
            sink.flush().await
        };
        let mut work = std::pin::pin!(work);
        // Fast path: a peer that reads takes the frames at once, so no timer
        // or cancellation waiter is armed for the common case.
        let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
        if let Poll::Ready(r) = first {
            return r.map_err(|_| Stop::Gone);
        }
        tokio::select! {
            r = &mut work => r.map_err(|_| Stop::Gone),
            // Ended by the bus mid-write (the usual case for a slow reader):
            // the close frame still says why (1013 too slow, 1008 revoked).
            _ = self.cancel.cancelled() => Err(bus_close(&self.close)),
            _ = self.app.shutdown.cancelled() => Err(stop(1001, "server shutting down")),
            _ = tokio::time::sleep(self.idle) => Err(stop(1008, "peer stopped reading")),
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), Stop> {
        self.write(vec![Message::Text(text.into())]).await
    }

    async fn send_error(&mut self, re: Option<&str>, err: &CoreError) -> Result<(), Stop> {
        self.send_text(frames::error_frame(re, err)).await
    }

    /// Sends the close frame (when there is one to send) and lets the socket go.
    /// The frame goes behind whatever a pending write left buffered, so a
    /// slow reader that keeps reading gets it after its backlog; one that
    /// reads nothing for [`CLOSE_WAIT`] is dropped without it.
    async fn finish(&mut self, outcome: Stop) {
        if let Stop::Close(code, reason) = outcome {
            let frame = Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from(reason),
            }));
            let _ = tokio::time::timeout(CLOSE_WAIT, self.sink.send(frame)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.sink.close()).await;
    }

    fn too_large(&self, len: usize) -> CoreError {
        CoreError::PayloadTooLarge(format!(
            "frame of {len} bytes exceeds limits.max_frame_bytes ({})",
            self.app.cfg.limits.max_frame_bytes
        ))
    }

    /// Waits for `hello` and authenticates it.
    async fn handshake(&mut self) -> Result<(Agent, Hello), Stop> {
        let deadline = Instant::now() + Duration::from_secs(self.app.cfg.limits.hello_timeout_s);
        loop {
            let msg = tokio::select! {
                m = self.stream.next() => m,
                _ = sleep_until(deadline) => {
                    return Err(stop(1008, "no hello within the time allowed"));
                }
                _ = self.app.shutdown.cancelled() => return Err(stop(1001, "server shutting down")),
            };
            let text = match msg {
                None | Some(Err(_)) => return Err(Stop::Gone),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Binary(_))) => {
                    let e =
                        CoreError::bad_request("binary frames are not accepted; send JSON text");
                    self.send_error(None, &e).await?;
                    return Err(stop(1008, "the first frame must be hello"));
                }
                Some(Ok(Message::Close(_))) => return Err(Stop::Gone),
                Some(Ok(_)) => continue,
            };
            if text.len() > self.app.cfg.limits.max_frame_bytes {
                let e = self.too_large(text.len());
                self.send_error(None, &e).await?;
                return Err(stop(1009, "frame too large"));
            }
            let (re, frame) = match frames::parse(&text, &self.app.core.catalog) {
                Ok(v) => v,
                Err(bad) => {
                    let e = CoreError::BadRequest(format!(
                        "{}; the first frame must be hello",
                        bad.message
                    ));
                    self.send_error(bad.re.as_deref(), &e).await?;
                    return Err(stop(1008, "the first frame must be hello"));
                }
            };
            let ClientFrame::Hello {
                token,
                capabilities,
                resume_from,
                replay_limit,
            } = frame
            else {
                let e = CoreError::Unauthorized("the first frame must be hello".into());
                self.send_error(re.as_deref(), &e).await?;
                return Err(stop(1008, "the first frame must be hello"));
            };
            return match crate::gateway::limits::authenticate(&self.app, self.peer, &token).await {
                Ok(agent) => Ok((
                    agent,
                    Hello {
                        re,
                        capabilities,
                        resume_from,
                        replay_limit,
                    },
                )),
                Err(e) => {
                    self.send_error(re.as_deref(), &e).await?;
                    match e {
                        CoreError::RateLimited { .. } => {
                            Err(stop(1013, "too many failed authentications"))
                        }
                        _ => Err(stop(1008, "unauthorized")),
                    }
                }
            };
        }
    }

    /// Registers the connection, sends `welcome`, replays, then serves.
    async fn serve(&mut self, mut agent: Agent, mut hello: Hello, session: uuid::Uuid) -> Stop {
        let core = self.app.core.clone();
        if let Err(e) = core
            .agent_connected(&agent.name, hello.capabilities.clone())
            .await
        {
            let _ = self.send_error(hello.re.as_deref(), &e).await;
            return stop(1008, "bad hello");
        }
        if let Some(c) = hello.capabilities.take() {
            agent.capabilities = c;
        }
        let limits = &self.app.cfg.limits;
        let reg = core
            .bus
            .register(&agent.name, agent.capabilities.clone(), limits.send_queue);
        self.cancel = reg.cancel;
        self.close = reg.close;
        let result = self.serve_registered(&agent, hello, session, reg.rx).await;
        core.bus.unregister(&agent.name, reg.id);
        if let Err(e) = core.touch_agent(&agent.name).await {
            tracing::warn!(error = %e, "could not record last_seen");
        }
        tracing::info!("disconnected");
        result
    }

    /// Checks what `hello` asked of the replay; an unusable value is
    /// answered with an `error` frame (after `welcome`) and left out.
    async fn resume_ask(&self, hello: &Hello, notes: &mut Vec<String>) -> ResumeAsk {
        let re = hello.re.as_deref();
        let refused = |msg: &str| {
            let e = CoreError::BadRequest(format!(
                "{msg}; it was ignored and events are replayed as if it were absent"
            ));
            frames::error_frame(re, &e)
        };
        let resume_from = match &hello.resume_from {
            Ok(Some(seq)) => match self.app.core.check_resume_from(*seq).await {
                Ok(()) => Some(*seq),
                Err(CoreError::BadRequest(msg)) => {
                    notes.push(refused(&msg));
                    None
                }
                Err(e) => {
                    notes.push(frames::error_frame(re, &e));
                    None
                }
            },
            Ok(None) => None,
            Err(msg) => {
                notes.push(refused(msg));
                None
            }
        };
        let replay_limit = match &hello.replay_limit {
            Ok(limit) => *limit,
            Err(msg) => {
                notes.push(refused(msg));
                None
            }
        };
        ResumeAsk {
            resume_from,
            replay_limit,
        }
    }

    async fn serve_registered(
        &mut self,
        agent: &Agent,
        hello: Hello,
        session: uuid::Uuid,
        rx: mpsc::Receiver<Delivery>,
    ) -> Stop {
        let core = self.app.core.clone();
        let limits = self.app.cfg.limits.clone();
        let re = hello.re.clone();
        let seq = match core.newest_seq_for(&agent.name, &agent.capabilities).await {
            // Events at or before base_seq predate the agent and are never sent to it.
            Ok(s) if s > agent.base_seq => s,
            Ok(_) => 0,
            Err(e) => {
                let _ = self.send_error(re.as_deref(), &e).await;
                return stop(1011, "internal error");
            }
        };
        let mut notes = Vec::new();
        let ask = self.resume_ask(&hello, &mut notes).await;
        let start = match core.replay_start(agent, ask).await {
            Ok(s) => s,
            Err(e) => {
                let _ = self.send_error(re.as_deref(), &e).await;
                return stop(1011, "internal error");
            }
        };
        let welcome = json!({
            "type": "welcome", "re": re, "agent": agent.name, "session": session.to_string(),
            "seq": seq, "heartbeat_s": limits.heartbeat_s, "role": agent.role,
            "capabilities": agent.capabilities,
            "replay": { "after": start.after, "limited": start.trimmed },
            "limits": {
                "max_frame_bytes": limits.max_frame_bytes,
                "max_bad_frames": limits.max_bad_frames,
                "max_text_chars": limits.max_text_chars,
                "max_prompt_chars": limits.max_prompt_chars,
                "max_claims": limits.max_claims,
                "send_queue": limits.send_queue,
                "rates": self.app.dispatch.rate_limits().report(),
            },
        });
        let mut first = vec![Message::Text(welcome.to_string().into())];
        first.extend(notes.into_iter().map(|n| Message::Text(n.into())));
        if let Some(gap) = start.gap {
            let frame = json!({
                "type": "resume_gap", "re": re,
                "resume_from": gap.requested, "pruned_to": gap.pruned_to,
                "replay_after": start.after,
                "message": format!(
                    "events up to seq {} were pruned by retention; events between {} and {} \
                     that were for you are gone; replay starts after {}",
                    gap.pruned_to, gap.requested, gap.pruned_to, start.after
                ),
            });
            first.push(Message::Text(frame.to_string().into()));
        }
        if let Err(s) = self.write(first).await {
            return s;
        }
        tracing::info!(after = start.after, "connected");
        let replay = ReplayStream::new(
            core.clone(),
            self.app.replay_reads.clone(),
            &agent.name,
            &agent.capabilities,
            start.after,
            self.app.cfg.events.replay_page,
        );
        self.read_loop(agent, rx, Some(replay)).await
    }

    /// Serves the connection: requests, live events, reasoning frames, and
    /// the replay's pages while it lasts (see [`super::replay`]).
    async fn read_loop(
        &mut self,
        agent: &Agent,
        mut rx: mpsc::Receiver<Delivery>,
        mut replay: Option<ReplayStream>,
    ) -> Stop {
        let caller = Caller {
            identity: agent.name.clone(),
            role: agent.role,
            capabilities: agent.capabilities.clone(),
            platform: Platform::Ws,
        };
        let idle = sleep_until(Instant::now() + self.idle);
        tokio::pin!(idle);
        // Registered once: creating these futures inside the loop would
        // register and drop a waiter on every wake-up.
        let ended = self.cancel.clone().cancelled_owned();
        tokio::pin!(ended);
        let shutdown = self.app.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        let mut rx_closed = false;
        let mut side_rx: Option<mpsc::Receiver<String>> = None;
        loop {
            if side_rx.is_none() {
                side_rx = self.side_rx.take();
            }
            tokio::select! {
                biased;
                _ = &mut ended => return bus_close(&self.close),
                _ = &mut shutdown => return stop(1001, "server shutting down"),
                d = rx.recv(), if !rx_closed => {
                    let Some(first) = d else { rx_closed = true; continue };
                    if let Some(r) = replay.as_mut() {
                        // replay sends these in their turn, from the store
                        r.saw_live(first.seq);
                        while let Ok(d) = rx.try_recv() {
                            r.saw_live(d.seq);
                        }
                    } else if let Err(s) = self.write_events(first, &mut rx).await {
                        return s;
                    }
                }
                Some(frame) = async {
                    match side_rx.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Err(s) = self.send_text(frame).await {
                        return s;
                    }
                }
                msg = self.stream.next() => {
                    idle.as_mut().reset(Instant::now() + self.idle);
                    // Frames already waiting are read in one go, so the
                    // commands among them run together and their writes
                    // join one group commit.
                    let mut burst = vec![msg];
                    while burst.len() < MAX_BURST {
                        match self.stream.next().now_or_never() {
                            Some(m) => burst.push(m),
                            None => break,
                        }
                    }
                    if let Err(s) = Box::pin(self.on_burst(burst, &caller)).await {
                        return s;
                    }
                }
                page = async {
                    match replay.as_mut() {
                        Some(r) => r.next_page().await,
                        None => std::future::pending().await,
                    }
                }, if replay.is_some() => {
                    let page = match page {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::error!(error = %e, "replay failed");
                            return stop(1011, "replay failed");
                        }
                    };
                    let done = replay.as_mut().is_some_and(|r| r.took(&page));
                    if let Some(last) = page.last_seq() {
                        self.last_sent = self.last_sent.max(last);
                    }
                    if done {
                        if let Some(r) = replay.take() {
                            self.last_sent = self.last_sent.max(r.sent_to());
                        }
                    }
                    let msgs: Vec<Message> = page
                        .frames
                        .into_iter()
                        .map(|(_, f)| Message::Text(f.into()))
                        .collect();
                    if !msgs.is_empty() {
                        if let Err(s) = self.write(msgs).await {
                            return s;
                        }
                        // a peer taking the replay is alive
                        idle.as_mut().reset(Instant::now() + self.idle);
                    }
                }
                _ = &mut idle => {
                    return stop(1008, format!("idle for {} s", self.idle.as_secs()));
                }
            }
        }
    }

    /// Serves frames read together, in order, each parsed once. Consecutive
    /// commands among them are executed concurrently (their writes share a
    /// commit) and answered in frame order.
    async fn on_burst(&mut self, burst: Vec<Option<WsRead>>, caller: &Caller) -> Result<(), Stop> {
        let single = burst.len() == 1;
        let mut run: Vec<(Option<String>, Command)> = Vec::new();
        for msg in burst {
            let msg = match msg {
                None | Some(Err(_)) => {
                    self.run_commands(std::mem::take(&mut run), caller).await?;
                    return Err(Stop::Gone);
                }
                Some(Ok(m)) => m,
            };
            match self.sort_frame(msg) {
                BurstItem::Plain(re, cmd) if !single => run.push((re, cmd)),
                BurstItem::Plain(re, cmd) => {
                    Box::pin(self.on_parsed(re, ClientFrame::Command(cmd), caller)).await?
                }
                BurstItem::Parsed(re, frame) => {
                    self.run_commands(std::mem::take(&mut run), caller).await?;
                    Box::pin(self.on_parsed(re, frame, caller)).await?;
                }
                BurstItem::Other(other) => {
                    self.run_commands(std::mem::take(&mut run), caller).await?;
                    self.on_message(other, caller).await?;
                }
            }
        }
        self.run_commands(run, caller).await
    }

    /// Parses a text frame once (an oversized or unparsable one is left for
    /// [`Conn::on_message`] to refuse).
    fn sort_frame(&self, msg: Message) -> BurstItem {
        let Message::Text(t) = msg else {
            return BurstItem::Other(msg);
        };
        if t.len() > self.app.cfg.limits.max_frame_bytes {
            return BurstItem::Other(Message::Text(t));
        }
        match frames::parse(t.as_str(), &self.app.core.catalog) {
            Ok((re, ClientFrame::Command(cmd))) if !matches!(cmd, Command::Reason { .. }) => {
                BurstItem::Plain(re, cmd)
            }
            Ok((re, frame)) => BurstItem::Parsed(re, frame),
            Err(_) => BurstItem::Other(Message::Text(t)),
        }
    }

    /// One frame, the way the read loop always served it.
    async fn on_message(&mut self, msg: Message, caller: &Caller) -> Result<(), Stop> {
        match msg {
            // Boxed: the request future (down to the database) is large and
            // would otherwise sit inline in every idle connection's task.
            Message::Text(t) => Box::pin(self.on_text(t.as_str(), caller)).await,
            Message::Binary(_) => {
                let e = CoreError::bad_request("binary frames are not accepted; send JSON text");
                self.on_bad(None, e).await
            }
            Message::Ping(_) | Message::Pong(_) => {
                // tungstenite queued the pong; make sure it goes out now
                let _ = self.sink.flush().await;
                Ok(())
            }
            Message::Close(_) => Err(Stop::Gone),
        }
    }

    /// Runs a run of parsed commands: one alone as usual; several executed
    /// together, answered in order in one flush.
    async fn run_commands(
        &mut self,
        run: Vec<(Option<String>, Command)>,
        caller: &Caller,
    ) -> Result<(), Stop> {
        if run.len() <= 1 {
            for (re, cmd) in run {
                Box::pin(self.on_parsed(re, ClientFrame::Command(cmd), caller)).await?;
            }
            return Ok(());
        }
        self.bad_in_a_row = 0;
        let dispatch = self.app.dispatch.clone();
        let replies = futures_util::future::join_all(run.into_iter().map(|(re, cmd)| {
            let dispatch = dispatch.clone();
            async move {
                match dispatch.dispatch(caller, cmd).await {
                    Ok(reply) => frames::reply_frame(re.as_deref(), &reply),
                    Err(e) => frames::error_frame(re.as_deref(), &e),
                }
            }
        }))
        .await;
        self.write(
            replies
                .into_iter()
                .map(|r| Message::Text(r.into()))
                .collect(),
        )
        .await
    }

    /// Writes `first` and whatever else is already queued, in one flush.
    async fn write_events(
        &mut self,
        first: Delivery,
        rx: &mut mpsc::Receiver<Delivery>,
    ) -> Result<(), Stop> {
        let mut batch = Vec::with_capacity(8);
        let mut next = Some(first);
        while let Some(d) = next.take() {
            if d.seq > self.last_sent {
                self.last_sent = d.seq;
                batch.push(Message::Text(d.frame.clone()));
            }
            if batch.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.write(batch).await
    }

    /// Runs an admitted reasoning call off the loop; its deltas and result
    /// come back through the side queue.
    fn start_reason(&mut self, re: Option<String>, admitted: Admitted, stream: bool) {
        let out = match &self.side_tx {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = mpsc::channel(SIDE_QUEUE);
                self.side_tx = Some(tx.clone());
                self.side_rx = Some(rx);
                tx
            }
        };
        self.jobs.spawn(async move {
            let result = if stream {
                let (dtx, mut drx) = mpsc::channel::<String>(64);
                let fwd_out = out.clone();
                let fwd_re = re.clone();
                let forward = async move {
                    while let Some(text) = drx.recv().await {
                        let f = json!({ "type": "reason.delta", "re": fwd_re, "text": text });
                        let _ = fwd_out.send(f.to_string()).await;
                    }
                };
                let (res, ()) = tokio::join!(admitted.run(Some(dtx)), forward);
                res
            } else {
                admitted.run(None).await
            };
            let frame = match result {
                Ok(reply) => frames::reply_frame(re.as_deref(), &reply),
                Err(e) => frames::error_frame(re.as_deref(), &e),
            };
            let _ = out.send(frame).await;
        });
    }

    async fn on_bad(&mut self, re: Option<String>, err: CoreError) -> Result<(), Stop> {
        self.bad_in_a_row += 1;
        self.send_error(re.as_deref(), &err).await?;
        if self.bad_in_a_row >= self.app.cfg.limits.max_bad_frames {
            return Err(stop(1008, "too many bad frames in a row"));
        }
        Ok(())
    }

    /// One text frame: size check, parse, then [`Conn::on_parsed`].
    async fn on_text(&mut self, text: &str, caller: &Caller) -> Result<(), Stop> {
        if text.len() > self.app.cfg.limits.max_frame_bytes {
            let e = self.too_large(text.len());
            self.send_error(None, &e).await?;
            return Err(stop(1009, "frame too large"));
        }
        match frames::parse(text, &self.app.core.catalog) {
            Ok((re, frame)) => self.on_parsed(re, frame, caller).await,
            Err(bad) => {
                self.on_bad(bad.re, CoreError::BadRequest(bad.message))
                    .await
            }
        }
    }

    /// Serves one parsed frame.
    async fn on_parsed(
        &mut self,
        re: Option<String>,
        frame: ClientFrame,
        caller: &Caller,
    ) -> Result<(), Stop> {
        let dispatch = self.app.dispatch.clone();
        let cmd = match frame {
            ClientFrame::Ack { seq } => {
                self.bad_in_a_row = 0;
                self.app.core.acks.ack(&caller.identity, seq);
                return Ok(());
            }
            ClientFrame::Hello { .. } => {
                return self
                    .on_bad(
                        re,
                        CoreError::bad_request("hello was already received on this connection"),
                    )
                    .await
            }
            ClientFrame::Ping => {
                self.bad_in_a_row = 0;
                let reply = match dispatch.check_rate_class(caller, crate::limits::REQUESTS) {
                    Ok(()) => json!({ "type": "pong", "re": re }).to_string(),
                    Err(e) => frames::error_frame(re.as_deref(), &e),
                };
                return self.send_text(reply).await;
            }
            ClientFrame::Command(cmd) => cmd,
        };
        self.bad_in_a_row = 0;
        let reply = match cmd {
            Command::Reason { stream, .. } => {
                while self.jobs.try_join_next().is_some() {}
                if self.jobs.len() >= MAX_REASON_JOBS {
                    let e = CoreError::RateLimited {
                        message: format!(
                            "{MAX_REASON_JOBS} reasoning calls already in flight on this connection"
                        ),
                        retry_after_ms: 1000,
                    };
                    frames::error_frame(re.as_deref(), &e)
                } else {
                    match dispatch.admit(caller, cmd) {
                        Ok(admitted) => {
                            self.start_reason(re, admitted, stream);
                            return Ok(());
                        }
                        Err(e) => frames::error_frame(re.as_deref(), &e),
                    }
                }
            }
            cmd => match dispatch.dispatch(caller, cmd).await {
                Ok(reply) => frames::reply_frame(re.as_deref(), &reply),
                Err(e) => frames::error_frame(re.as_deref(), &e),
            },
        };
        self.send_text(reply).await
    }
}
