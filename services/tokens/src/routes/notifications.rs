//! `/v1/notifications`: the signed-in user's notifications (tokens expiring
//! soon or expired, leaked, revoked by someone else, used from a new client
//! IP), newest first, and marking one read. Another user's notification, an
//! unknown id and a malformed one answer alike: 404.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use enspace_http::ApiError;
use jiff::Timestamp;
use serde::Serialize;
use ulid::Ulid;

use crate::auth::Caller;
use crate::state::AppState;
use enspace_notify::store::LIST_LIMIT;
use enspace_notify::{Kind, Notification};

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Notification)]
pub struct NotificationJson {
    id: Ulid,
    kind: Kind,
    token_id: Ulid,
    /// When it happened, or fell due (an expiry stage).
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// A short sentence for people: the token's description and what
    /// happened.
    detail: String,
    read: bool,
}

impl From<Notification> for NotificationJson {
    fn from(n: Notification) -> Self {
        NotificationJson {
            id: n.id,
            kind: n.kind,
            token_id: n.token_id,
            at: n.at,
            detail: n.detail,
            read: n.read,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationList {
    /// Newest first; the 100 newest at most.
    #[schema(max_items = 100, value_type = Vec<NotificationJson>)]
    notifications: Vec<NotificationJson>,
}

fn notification_not_found() -> ApiError {
    ApiError::not_found(
        "notification_not_found",
        "no notification with this id among yours",
    )
}

/// The caller's notifications, newest first (the 100 newest).
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications",
    security(("session" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The caller's notifications", body = NotificationList),
        enspace_http::responses::SignedIn,
    )
)]
pub async fn list_notifications(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<NotificationList>, ApiError> {
    let store = state.notifications.store.clone();
    let user = caller.user.id;
    let list = enspace_http::blocking(move || store.list(&user, LIST_LIMIT)).await?;
    Ok(Json(NotificationList {
        notifications: list.into_iter().map(NotificationJson::from).collect(),
    }))
}

/// Marks one of the caller's notifications read. Marking it again changes
/// nothing. The body, if any, is ignored.
#[utoipa::path(post, path = "/v1/notifications/{id}/read", tag = "notifications",
    security(("session" = []), ("session_cookie" = [])),
    params(("id" = String, Path, description = "The notification id (a ULID)")),
    responses(
        (status = 204, description = "Marked read"),
        enspace_http::responses::SignedIn,
        (status = 404, response = inline(enspace_http::responses::NotFound)),
        (status = 413, response = inline(enspace_http::responses::PayloadTooLarge)),
    )
)]
pub async fn read_notification(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _body: Bytes,
) -> Result<StatusCode, ApiError> {
    let id = Ulid::from_string(&id).map_err(|_| notification_not_found())?;
    let store = state.notifications.store.clone();
    let user = caller.user.id;
    let marked = enspace_http::blocking(move || store.mark_read(&user, id)).await?;
    if marked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(notification_not_found())
    }
}
