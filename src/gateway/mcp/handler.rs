//! The MCP server handler: `tools/list` from the catalog, `tools/call`
//! parsed with the catalog's checks and the one command parser, run
//! through the dispatcher, and the reply rendered as a tool result. The
//! caller is the agent the bearer token named ([`super::require_agent`]).

use super::tools;
use crate::core::command::Reply;
use crate::core::error::CoreError;
use crate::core::events::EventKind;
use crate::core::model::Caller;
use crate::dispatch::parse;
use crate::gateway::http::caller::reply_json;
use crate::gateway::AppState;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::json;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// What a client is told about the server at `initialize` or `server/discover`.
const INSTRUCTIONS: &str = "swarmbridge coordinates a swarm of agents. Loop: task_claim \
(with wait_s to wait for work), task_progress while working (it renews your lease), then \
task_done or task_fail. msg sends a direct message, broadcast reaches every agent.";

/// One MCP server instance (rmcp makes one per session, or per request
/// when stateless); cheap to make, it holds the shared state.
#[derive(Clone)]
pub struct SwarmTools {
    app: AppState,
}

impl SwarmTools {
    /// A handler over the server's shared state.
    pub fn new(app: AppState) -> Self {
        SwarmTools { app }
    }

    /// Runs a `task.claim`; with `wait_s`, keeps trying as tasks open up
    /// (created, released, expired, failed for a retry, offered) until one
    /// is claimed or the wait is over, then answers what the last try did.
    async fn claim_waiting(
        &self,
        caller: &Caller,
        args: &crate::catalog::Args,
        wait_s: i64,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Reply, CoreError> {
        let deadline = Instant::now() + Duration::from_secs(wait_s.max(0).unsigned_abs());
        // Subscribed before the first try, so a task created meanwhile is seen.
        let mut events = self.app.core.bus.observe();
        loop {
            let cmd = parse::chat_command("task.claim", args)?;
            let reply = self.app.dispatch.dispatch(caller, cmd).await?;
            if !matches!(reply, Reply::Task(None)) || wait_s == 0 {
                return Ok(reply);
            }
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return Ok(reply),
                    _ = self.app.shutdown.cancelled() => return Ok(reply),
                    next = tokio::time::timeout_at(deadline, events.recv()) => next,
                };
                match next {
                    Err(_elapsed) => return Ok(reply),
                    Ok(Err(RecvError::Closed)) => return Ok(reply),
                    Ok(Err(RecvError::Lagged(_))) => break,
                    Ok(Ok(ev))
                        if matches!(
                            ev.kind,
                            EventKind::TaskCreated
                                | EventKind::TaskReleased
                                | EventKind::TaskExpired
                                | EventKind::TaskFailed
                                | EventKind::TaskOffered
                        ) =>
                    {
                        break
                    }
                    Ok(Ok(_)) => continue,
                }
            }
        }
    }
}

/// A reply as a tool result: the HTTP API's JSON body as structured
/// content and as text (what a model reads).
pub fn render_reply(reply: &Reply) -> CallToolResult {
    let body = reply_json(reply);
    let text = match reply {
        Reply::Task(None) => {
            "no task to claim now; call task_claim again (wait_s waits for one)".to_string()
        }
        _ => body.to_string(),
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(body);
    result
}

/// An error as a tool result with `isError`: the protocol's code and the
/// message in the text, and `{"error":{code,message}}` as structured content.
pub fn render_error(err: &CoreError) -> CallToolResult {
    let mut error = json!({ "code": err.code(), "message": err.to_string() });
    if let Some(ms) = err.retry_after_ms() {
        error["retry_after_ms"] = json!(ms);
    }
    let mut result =
        CallToolResult::error(vec![ContentBlock::text(format!("{}: {err}", err.code()))]);
    result.structured_content = Some(json!({ "error": error }));
    result
}

/// The caller [`super::require_agent`] put on the HTTP request.
fn caller_of(context: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| {
            McpError::internal_error("the request carries no authenticated caller", None)
        })
}

impl ServerHandler for SwarmTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "swarmbridge",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools::tools(
            &self.app.core.catalog,
        )))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = caller_of(&context)?;
        let Some(spec) = tools::spec_for_tool(&self.app.core.catalog, &request.name) else {
            return Err(McpError::invalid_params(
                format!(
                    "unknown tool {:?}; tools/list names the tools",
                    request.name
                ),
                None,
            ));
        };
        let (args, wait_s) = match tools::checked_args(spec, request.arguments.as_ref()) {
            Ok(checked) => checked,
            Err(e) => return Ok(render_error(&e).into()),
        };
        let outcome = if tools::is_claim(spec) {
            self.claim_waiting(&caller, &args, wait_s, &context.ct)
                .await
        } else {
            match parse::chat_command(spec.ws_type(), &args) {
                Ok(cmd) => self.app.dispatch.dispatch(&caller, cmd).await,
                Err(e) => Err(e),
            }
        };
        Ok(match outcome {
            Ok(reply) => render_reply(&reply),
            Err(e) => render_error(&e),
        }
        .into())
    }
}
