//! The OpenAPI document (`/api/openapi.json`, public): its fixed parts and
//! the schemas every path shares; the paths come from the handlers'
//! `#[utoipa::path]` attributes as [`super::api_router`] routes them, so a
//! route cannot be served without being documented.

use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's fixed parts.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "swarmbridge API",
        description = "Tasks, agents, messages, polls, search, reasoning and live events of a \
            swarmbridge server. Send an agent token as `Authorization: Bearer <token>`. \
            Each request is the protocol command of the same name and follows the command \
            catalog's roles and rate classes, as on the WebSocket."
    ),
    components(schemas(ErrorBody, ErrorDetail, OkReply)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the paths refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every error: `{"error":{"code","message"}}` with the matching status.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error's protocol code and a message for people.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `rate_limited`, `payload_too_large`, `unavailable` or `internal`.
    pub code: String,
    /// Explanation.
    pub message: String,
}

/// `{"ok": true}`
#[derive(Serialize, ToSchema)]
pub struct OkReply {
    /// Always true.
    pub ok: bool,
}

/// The document as pretty JSON, rendered once at start-up.
pub fn openapi_json(doc: &utoipa::openapi::OpenApi) -> Arc<str> {
    Arc::from(
        doc.to_pretty_json()
            .unwrap_or_else(|e| json!({ "error": e.to_string() }).to_string()),
    )
}
