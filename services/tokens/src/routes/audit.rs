//! `GET /v1/audit/events?after=SEQ&limit=N`: the whole log for auditors.

use axum::Json;
use axum::extract::{Query, State};
use enspace_core::AuditEvent;
use enspace_http::ApiError;
use serde::{Deserialize, Serialize};

use super::paging;
use crate::auth::Auditor;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Page {
    after: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    events: Vec<AuditEvent>,
    next_after: Option<u64>,
}

/// The whole event log in `seq` order, for auditors.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", security(("session" = []), ("session_cookie" = [])),
    params(
        ("after" = Option<u64>, Query, description = "Return events with a greater seq (default 0)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of events; follow `next_after` until it is null", body = AuditPage),
        enspace_http::responses::SignedIn,
        (status = 400, response = inline(enspace_http::responses::BadRequest)),
        (status = 422, response = inline(enspace_http::responses::Unprocessable)),
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    _auditor: Auditor,
    Query(page): Query<Page>,
) -> Result<Json<AuditPage>, ApiError> {
    let after = paging::after_seq(page.after.as_deref())?;
    let limit = paging::limit(page.limit.as_deref(), 100, 1000)?;
    let log = state.store.log.clone();
    let keys = state.keys()?;
    let (events, last, head) = enspace_http::blocking(move || {
        let entries = log.read_after(after, limit)?;
        let (head, _) = log.head()?;
        let last = entries.last().map(|e| e.envelope.seq);
        let events = entries.iter().map(|e| e.audit(&keys)).collect();
        Ok::<_, enspace_store::StoreError>((events, last, head))
    })
    .await?;
    let next_after = last.filter(|&seq| seq < head);
    Ok(Json(AuditPage { events, next_after }))
}
