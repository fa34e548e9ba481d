//! The agent WebSocket at `/ws` (`docs/protocol.md`).

pub mod frames;
mod replay;
pub mod session;

use super::limits::PeerAddr;
use super::AppState;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::Response;

/// Slack above `max_frame_bytes` that the WebSocket layer still reads, so an
/// oversized frame gets a `payload_too_large` error rather than a dropped socket.
const OVERSIZE_SLACK: usize = 1 << 20;

/// The read buffer a connection starts with (tungstenite allocates it up
/// front, so every idle connection pays for it); a larger frame grows it
/// to the frame's size. Agents' requests are mostly a few hundred bytes.
const READ_BUFFER: usize = 512;

/// Bytes of frames the socket buffers before it writes them out, short of a
/// flush. Each batch of events ends with one flush, so a batch goes out in
/// one `send` instead of one per frame (with 0, every frame was its own
/// system call and its own TCP segment, on both ends of the connection).
/// Small enough that the buffer a busy connection keeps stays small.
const WRITE_BUFFER: usize = 8 * 1024;

/// `GET /ws`: upgrades and serves one agent session.
pub async fn upgrade(
    State(app): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ws: WebSocketUpgrade,
) -> Response {
    let max = app.cfg.limits.max_frame_bytes + OVERSIZE_SLACK;
    let sessions = app.sessions.clone();
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| sessions.track_future(session::run(socket, app, peer)))
}
