//! The OpenAPI 3.1 document. Paths come from the `#[utoipa::path]`
//! annotations of the handlers that the routers are built from (utoipa-axum
//! `routes!`), so a route cannot exist without being documented, nor the
//! other way round; this module adds what is global: info, tags and the
//! security schemes.

use std::sync::Arc;

use axum::{Extension, Json};
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ENSPACE tokens",
        description = "Personal access tokens: sessions, the token lifecycle, request logs, audit, introspection, and the example API that API nodes serve behind the token auth layer.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&SecuritySchemes),
    paths(get_openapi),
    tags(
        (name = "session", description = "Signing in and out"),
        (name = "tokens", description = "Personal access tokens"),
        (name = "decoys", description = "Decoy tokens: secrets that never grant anything and tell their owner whenever they are used"),
        (name = "leaks", description = "Reports of leaked tokens: GitHub secret scanning, and anyone who finds one"),
        (name = "workspaces", description = "What workspace admins see and set: the tokens reaching a workspace, and its token policy"),
        (name = "request-logs", description = "Per-token request logs, kept 90 days"),
        (name = "notifications", description = "Tokens expiring, expired, leaked or revoked by someone else, told to their owner"),
        (name = "audit", description = "The hash-chained event log"),
        (name = "introspection", description = "RFC 7662 for API nodes in other languages"),
        (name = "records", description = "The example API served by API nodes"),
        (name = "operations", description = "Health, readiness, metrics"),
    ),
    components(schemas(
        enspace_core::events::TokenCreated,
        enspace_core::events::TokenRevoked,
        enspace_core::events::TokenRotated,
        enspace_core::events::WorkspacePolicySet,
        enspace_core::events::EventEnvelopeWire,
        enspace_core::RequestRecord,
        enspace_core::record_batch::RequestRecordBatch,
        enspace_http::ProblemDetails,
        enspace_accounts::directory::DirectoryFile,
        enspace_core::audit_export::ExportHeader,
    ))
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |format: &str, description: &str| {
            let mut scheme = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format(format)
                .build();
            scheme.description = Some(description.to_owned());
            SecurityScheme::Http(scheme)
        };
        components.add_security_scheme(
            "session",
            bearer(
                "ens_sess_…",
                "A session from POST /v1/session, as a bearer token",
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "enspace_session",
                "The HttpOnly session cookie set by POST /v1/session",
            ))),
        );
        components.add_security_scheme(
            "pat",
            bearer(
                "ens_pat_…",
                "A personal access token: on API nodes, and a token made with self_rotate on POST /v1/tokens/self/rotate (no other management route)",
            ),
        );
        components.add_security_scheme(
            "internal_key",
            bearer(
                "opaque",
                "ENSPACE_INTERNAL_KEY, for POST /v1/introspect, GET /v1/cluster and POST /v1/event-key/rotate",
            ),
        );
    }
}

/// The whole document: global parts plus the paths of the given routers.
pub fn document(
    paths: impl IntoIterator<Item = utoipa::openapi::OpenApi>,
) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in paths {
        doc.merge(part);
    }
    doc
}

/// The document as served, rendered once.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<serde_json::Value>);

impl OpenApiJson {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        OpenApiJson(Arc::new(
            serde_json::to_value(doc).unwrap_or(serde_json::Value::Null),
        ))
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn get_openapi(Extension(doc): Extension<OpenApiJson>) -> Json<serde_json::Value> {
    Json((*doc.0).clone())
}
