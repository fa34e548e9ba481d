//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay
//! test (`tests/it/fuzz_corpus.rs`): each takes the raw bytes an outside
//! peer could send and runs them through the parsing path the server runs
//! them through, without a server, database or network. Outside input must
//! get a clear error, so any panic here is a bug; the `assert!`s are the
//! promises those paths make about what they hand on (limits kept, nothing
//! lost or invented). Not a stable API: `docs/reliability.md` (Fuzzing)
//! says how it is used.

use crate::catalog::{ArgValue, Args, Catalog};
use crate::core::error::CoreError;
use crate::core::model::Role;
use crate::dispatch::parse;
use crate::gateway::a2a::{self, wire as a2a_wire};
use crate::gateway::discord::http_endpoint::{read_body, SignedBody};
use crate::gateway::discord::interactions::{parse_button, parse_vote_button, slash_command};
use crate::gateway::mcp::{handler, tools};
use crate::gateway::twitch::tags::repair_tags;
use crate::gateway::twitch::{query_key, render as chat, split_command};
use crate::gateway::ws::frames::{self, ClientFrame};
use crate::reason::{
    answer_from_event_stream, answer_from_json, backend_error_message, DeltaSink, SseDecoder,
};
use rmcp::model::{CallToolRequestParams, ClientJsonRpcMessage, ClientRequest};
use serde_json::Value;
use std::sync::OnceLock;
use twitch_irc::message::{IRCMessage, ServerMessage};

/// One fuzz target: bytes from outside in, a panic on a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` and the corpus
/// folders `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/` name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("ws_frame", ws_frame),
    ("twitch_irc", twitch_irc),
    ("twitch_command", twitch_command),
    ("catalog_args", catalog_args),
    ("discord_interaction", discord_interaction),
    ("reason_sse", reason_sse),
    ("reason_json", reason_json),
    ("mcp_request", mcp_request),
    ("a2a_request", a2a_request),
];

/// The longest chat line the fuzzed Twitch replies are composed to
/// (Twitch's own limit; `twitch.outbound.max_chars` defaults lower).
const CHAT_MAX: usize = 500;

/// The embedded catalog, parsed once.
fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::embedded().expect("the embedded catalog is valid"))
}

/// A refusal as every front door renders it; the message must say something.
fn check_error(e: &CoreError) {
    assert!(!e.to_string().is_empty(), "an error without a message");
    let _ = chat::error(e);
}

/// A WebSocket text frame (`docs/protocol.md`): JSON, `id`, `type`, then
/// the command through the catalog's limits and the one parser, as
/// `gateway::ws::session` reads every frame; a refusal is rendered as the
/// `error` frame the client would get.
pub fn ws_frame(data: &[u8]) {
    // The WebSocket layer only hands on text frames that are UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match frames::parse(text, catalog()) {
        Ok((re, frame)) => {
            assert!(re
                .as_deref()
                .is_none_or(|id| id.chars().count() <= frames::MAX_ID_CHARS));
            let _ = frame.name();
            if let ClientFrame::Command(cmd) = frame {
                assert!(crate::core::command::COMMAND_NAMES.contains(&cmd.name()));
            }
        }
        Err(bad) => {
            assert!(!bad.message.is_empty(), "a refusal without a message");
            let err = CoreError::BadRequest(bad.message);
            let out = frames::error_frame(bad.re.as_deref(), &err);
            let v: Value = serde_json::from_str(&out).expect("the error frame is JSON");
            assert_eq!(v["re"].as_str(), bad.re.as_deref());
        }
    }
}

/// Raw IRC lines from the Twitch connection (the chat text in them is the
/// viewers'): parsed by twitch-irc as the client does, then a PRIVMSG goes
/// the chat-command path ([`twitch_command`]) and a NOTICE is logged cut.
pub fn twitch_irc(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        // As the connection hands every line on (`gateway::twitch::tags`).
        let line = repair_tags(line);
        let Ok(irc) = IRCMessage::parse(&line) else {
            continue;
        };
        match ServerMessage::try_from(irc) {
            Ok(ServerMessage::Privmsg(m)) => {
                chat_command(&m.message_text, &m.sender.login);
            }
            Ok(ServerMessage::Notice(n)) => {
                let _ = chat::fit(&chat::clean(&n.message_text), 200);
            }
            _ => {}
        }
    }
}

/// A Twitch chat message's text, as a viewer types it (`!task 42`).
pub fn twitch_command(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        chat_command(text, "viewer");
    }
}

/// The chat path of `gateway::twitch::Door::on_privmsg` after the role
/// and cooldown checks: prefix and alias, the coalescing key, the
/// catalog's positional parse, the one command parser; then the line the
/// bot would send back, which must keep the chat line rules.
fn chat_command(text: &str, viewer: &str) {
    // Anything echoed, such as a broadcast text, is made one chat line.
    check_chat_line(&chat::chat_line(text, CHAT_MAX), CHAT_MAX);
    let Some((alias, args)) = split_command(text, "!") else {
        return;
    };
    let Some(spec) = catalog().by_twitch_alias(&alias) else {
        return;
    };
    for role in [Role::Viewer, Role::Operator] {
        let _ = query_key(spec, args, role);
    }
    let body = match spec
        .parse_positional(args)
        .and_then(|a| parse::chat_command(spec.ws_type(), &a))
    {
        Ok(_) => "ok".to_string(),
        Err(e) => {
            check_error(&e);
            chat::error(&e)
        }
    };
    let line = chat::chat_line(
        &format!("@{} {}", chat::clean(viewer), chat::clean(&body)),
        CHAT_MAX,
    );
    check_chat_line(&line, CHAT_MAX);
}

/// The rules every line the bot sends keeps (`gateway::twitch::render`).
fn check_chat_line(line: &str, max: usize) {
    assert!(line.chars().count() <= max, "line over {max}: {line:?}");
    assert!(!line.chars().any(char::is_control), "control in {line:?}");
    assert!(!line.starts_with(['/', '.']), "a chat command: {line:?}");
    assert!(!line.is_empty());
}

/// Catalog-driven option validation: the first line names a command (its
/// catalog name, frame type or Twitch alias), the rest is its arguments,
/// read as chat words ([`crate::catalog::CommandSpec::parse_positional`])
/// and, when it is a JSON object, as JSON values
/// ([`parse::check_json_args`], [`parse::command_in`]) and as the typed
/// values Discord and MCP collect ([`crate::catalog::CommandSpec::validate`]).
pub fn catalog_args(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (name, rest) = text.split_once('\n').unwrap_or((text, ""));
    let catalog = catalog();
    let Some(spec) = catalog
        .commands()
        .iter()
        .find(|s| s.name == name || s.ws_type() == name)
        .or_else(|| catalog.by_twitch_alias(name))
    else {
        return;
    };
    match spec.parse_positional(rest) {
        Ok(args) => {
            if let Err(e) = parse::chat_command(spec.ws_type(), &args) {
                check_error(&e);
            }
        }
        Err(e) => check_error(&e),
    }
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(rest) else {
        return;
    };
    if let Err(e) = parse::check_json_args(spec, &fields) {
        check_error(&e);
    }
    if let Err(e) = parse::command_in(catalog, spec.ws_type(), fields.clone()) {
        check_error(&e);
    }
    let args: Args = fields
        .iter()
        .filter_map(|(k, v)| {
            let v = match v {
                Value::String(s) => ArgValue::Str(s.clone()),
                Value::Bool(b) => ArgValue::Bool(*b),
                Value::Number(n) => ArgValue::Int(n.as_i64()?),
                _ => return None,
            };
            Some((k.clone(), v))
        })
        .collect();
    match spec.validate(&args) {
        Ok(()) => {
            if let Err(e) = parse::chat_command(spec.ws_type(), &args) {
                check_error(&e);
            }
        }
        Err(e) => check_error(&e),
    }
}

/// A `POST /discord/interactions` body after its signature was checked:
/// PING, or an interaction; a slash command (or its autocomplete) becomes
/// a command through the catalog, a button's custom id a vote or a task
/// action, as `gateway::discord::interactions` does.
pub fn discord_interaction(data: &[u8]) {
    let interaction = match read_body(data) {
        Ok(SignedBody::Ping) => return,
        Ok(SignedBody::Interaction(i)) => i,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    use serenity::model::application::Interaction;
    match *interaction {
        Interaction::Command(c) => {
            if let Err(e) = slash_command(catalog(), &c.data) {
                check_error(&e);
                let _ = crate::gateway::discord::render::error_message(&e);
            }
        }
        Interaction::Autocomplete(c) => {
            let _ = slash_command(catalog(), &c.data);
            if let Some(focused) = c.data.autocomplete() {
                let _ = focused.value.trim();
            }
        }
        Interaction::Component(c) => {
            let id = &c.data.custom_id;
            let _ = parse_vote_button(id).is_some() || parse_button(id).is_some();
        }
        _ => {}
    }
}

/// A runtime to drive the async readers on this thread.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// A streamed reasoning answer (`text/event-stream`): the first byte sets
/// the size of the pieces the body arrives in (1 to 64 bytes), the rest is
/// the body. The events must not depend on where the body was split, and
/// the deltas passed on must add up to the answer.
pub fn reason_sse(data: &[u8]) {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(split % 64) + 1;
    let events = |step: usize| {
        let mut decoder = SseDecoder::default();
        let mut events: Vec<String> = body.chunks(step).flat_map(|c| decoder.push(c)).collect();
        events.extend(decoder.finish());
        events
    };
    assert_eq!(
        events(body.len().max(1)),
        events(step),
        "split every {step}"
    );

    let (tx, mut rx) = tokio::sync::mpsc::channel(body.len() + 1);
    let mut sink = DeltaSink::new(&tx);
    let pieces = body.chunks(step).map(Ok::<_, reqwest::Error>);
    let outcome = runtime().block_on(answer_from_event_stream(
        futures_util::stream::iter(pieces),
        &mut sink,
    ));
    drop(tx);
    let mut streamed = String::new();
    while let Ok(delta) = rx.try_recv() {
        streamed.push_str(&delta);
    }
    match outcome {
        Ok(answer) => {
            assert!(!answer.text.is_empty());
            assert_eq!(answer.text, streamed, "deltas and answer differ");
            assert!(answer.confidence.is_none_or(|c| (0.0..=1.0).contains(&c)));
        }
        Err(failure) => assert!(!failure.error.to_string().is_empty()),
    }
}

/// A whole reasoning answer (`application/json`), and the same bytes as an
/// error body whose message is shown to users.
pub fn reason_json(data: &[u8]) {
    match answer_from_json(data) {
        Ok(answer) => {
            assert!(!answer.text.is_empty());
            assert!(answer.confidence.is_none_or(|c| (0.0..=1.0).contains(&c)));
        }
        Err(failure) => assert!(!failure.error.to_string().is_empty()),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(m) = backend_error_message(text) {
            // 200 characters and the ellipsis.
            assert!(m.chars().count() <= 201, "{} characters", m.chars().count());
        }
    }
}

/// A `POST /mcp` body: JSON (`gateway::mcp::check_body`), a JSON-RPC
/// message as rmcp reads it, and a `tools/call` through the catalog's
/// checks and the one command parser, as `gateway::mcp::handler` runs it.
pub fn mcp_request(data: &[u8]) {
    if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
        return;
    }
    let Ok(ClientJsonRpcMessage::Request(request)) =
        serde_json::from_slice::<ClientJsonRpcMessage>(data)
    else {
        return;
    };
    if let ClientRequest::CallToolRequest(call) = request.request {
        tool_call(&call.params);
    }
}

fn tool_call(params: &CallToolRequestParams) {
    let Some(spec) = tools::spec_for_tool(catalog(), &params.name) else {
        return;
    };
    let outcome = tools::checked_args(spec, params.arguments.as_ref()).and_then(|(args, _)| {
        let name = if tools::is_claim(spec) {
            "task.claim"
        } else {
            spec.ws_type()
        };
        parse::chat_command(name, &args)
    });
    if let Err(e) = outcome {
        check_error(&e);
        let _ = handler::render_error(&e);
    }
}

/// A `POST /a2a` body: JSON, the JSON-RPC 2.0 envelope
/// (`gateway::a2a::envelope`), each method's parameters, and for
/// `SendMessage` the message's `contextId`, the task fields it becomes and
/// the catalog's `task.create` parse, as `gateway::a2a::serve_rpc` runs it
/// before the dispatcher. A refusal must render as a JSON-RPC error
/// response with the request's id, a negative code and a message.
pub fn a2a_request(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let outcome = a2a::envelope(request).and_then(|(method, params)| a2a_method(&method, params));
    if let Err(e) = outcome {
        let resp = a2a_wire::error_response(&id, &e);
        assert_eq!(resp["jsonrpc"], "2.0", "{resp}");
        assert!(
            resp["error"]["code"].as_i64().is_some_and(|c| c < 0),
            "{resp}"
        );
        assert!(
            resp["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{resp}"
        );
    }
}

/// What `gateway::a2a::run_method` checks before it reaches the dispatcher.
fn a2a_method(method: &str, params: Value) -> Result<(), a2a_wire::A2aError> {
    let from_core = |e| a2a_wire::A2aError::from_core(e, false);
    match method {
        "SendMessage" | "SendStreamingMessage" => {
            let p: a2a_wire::SendMessageParams = a2a_wire::params(method, params)?;
            let context = a2a_wire::given_context_id(&p)?;
            if let Some(c) = &context {
                assert!(c.chars().count() <= a2a_wire::MAX_CONTEXT_ID_CHARS);
            }
            let context = context.unwrap_or_else(|| "fuzz-context".into());
            let fields = a2a_wire::task_fields(&p, &context)?;
            let title = fields["title"].as_str().expect("a title");
            assert!(!title.trim().is_empty(), "an empty title");
            assert!(
                title.chars().count() <= a2a_wire::MAX_TITLE_CHARS,
                "{title}"
            );
            parse::command_in(catalog(), "task.create", fields).map_err(from_core)?;
        }
        "GetTask" | "CancelTask" | "SubscribeToTask" => {
            let p: a2a_wire::TaskIdParams = a2a_wire::params(method, params)?;
            let n = a2a_wire::task_number(&p.id)?;
            assert!(n > 0);
            let mut fields = serde_json::Map::new();
            fields.insert("task_id".into(), n.into());
            parse::command_in(catalog(), "task.get", fields).map_err(from_core)?;
        }
        _ => {}
    }
    Ok(())
}

/// Runs target `name` on `data`; false when there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match TARGETS.iter().find(|(n, _)| *n == name) {
        Some((_, target)) => {
            target(data);
            true
        }
        None => false,
    }
}
