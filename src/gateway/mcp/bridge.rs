//! `swarmbridge mcp --url ... --token ...`: an MCP server on stdin/stdout
//! for clients that launch MCP servers as a process (Claude Desktop, many
//! agent frameworks). It holds no state of its own: every `tools/list` and
//! `tools/call` is forwarded to a running server's `/mcp` with the agent
//! token, so the roles, limits and leases are that server's.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ResultType, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ErrorData as McpError, RoleClient, RoleServer, ServerHandler, ServiceExt};
use std::sync::Arc;

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The server at `--url` could not be reached or refused the handshake.
    #[error("cannot reach the MCP endpoint {url}: {reason}")]
    Upstream {
        /// The `/mcp` URL tried.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The stdio side failed (the client went away mid-handshake).
    #[error("the MCP client on stdin/stdout failed: {0}")]
    Stdio(String),
}

/// The stdio server: each call goes to the upstream `/mcp`.
struct ForwardedTools {
    upstream: Arc<RunningService<RoleClient, ()>>,
}

/// An upstream failure as the error the stdio client sees.
fn forwarded_error(e: ServiceError) -> McpError {
    match e {
        ServiceError::McpError(e) => e,
        other => McpError::internal_error(format!("swarmbridge server: {other}"), None),
    }
}

impl ServerHandler for ForwardedTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("swarmbridge-stdio", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = self
            .upstream
            .peer()
            .list_tools(request)
            .await
            .map_err(forwarded_error)?;
        // The upstream leg speaks an older revision, which leaves
        // `resultType` out ("absent means complete"); a 2026-07-28 client on
        // stdio requires it. rmcp strips it again for older stdio clients.
        tools.result_type.get_or_insert(ResultType::COMPLETE);
        Ok(tools)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let mut answer = self
            .upstream
            .call_tool_once(request)
            .await
            .map_err(forwarded_error)?;
        // As for `tools/list`: restore the `resultType` the older upstream
        // revision leaves out.
        if let CallToolResponse::Complete(result) = &mut answer {
            result.result_type.get_or_insert(ResultType::COMPLETE);
        }
        Ok(answer)
    }
}

/// The `/mcp` URL for a `--url` given as the server's base or as `/mcp` itself.
pub fn endpoint(url: &str) -> String {
    let base = url.trim_end_matches('/');
    if base.ends_with("/mcp") {
        base.to_string()
    } else {
        format!("{base}/mcp")
    }
}

/// Serves MCP on stdin/stdout until the client closes stdin, forwarding
/// to the server at `url` as the agent of `token`.
pub async fn run_stdio_bridge(url: &str, token: &str) -> Result<(), BridgeError> {
    let url = endpoint(url);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(token.to_string()),
    );
    let upstream =
        ().serve(transport)
            .await
            .map_err(|e| BridgeError::Upstream {
                url: url.clone(),
                reason: e.to_string(),
            })?;
    let server = ForwardedTools {
        upstream: Arc::new(upstream),
    }
    .serve(rmcp::transport::stdio())
    .await
    .map_err(|e| BridgeError::Stdio(e.to_string()))?;
    server
        .waiting()
        .await
        .map_err(|e| BridgeError::Stdio(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_endpoint_is_the_servers_mcp_path() {
        assert_eq!(super::endpoint("http://h:1"), "http://h:1/mcp");
        assert_eq!(super::endpoint("http://h:1/"), "http://h:1/mcp");
        assert_eq!(super::endpoint("http://h:1/mcp"), "http://h:1/mcp");
    }
}
