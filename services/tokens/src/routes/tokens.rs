//! `/v1/tokens`: create, list, get, revoke, rotate, and a token's history.
//! Tokens are never edited: `PUT`/`PATCH` answer 405.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use enspace_core::token::RevokeReason;
use enspace_core::{AuditEvent, Expiration, PatSecret, Scope, TokenStatus, TokenView, fence};
use enspace_http::{ApiError, ApiJson, blocking};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::auth::Caller;
use crate::routes::own_token::{OwnToken, token_not_found};
use crate::state::AppState;
use crate::token_quota::QuotaError;
use enspace_store::StoreError;
use enspace_store::commands::{Command, CommandError, CreateToken};

pub const DESCRIPTION_MAX_CHARS: usize = 100;

/// A token as its owner sees it; never the secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Token)]
pub struct TokenJson {
    id: Ulid,
    description: String,
    expiration: Expiration,
    scopes: Vec<Scope>,
    workspaces: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    revoked_at: Option<Timestamp>,
    status: TokenStatus,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    last_used_at: Option<Timestamp>,
    /// The token this one replaced by a rotation, or null.
    #[schema(value_type = Option<String>, required = true)]
    replaces: Option<Ulid>,
    /// The token that replaced this one by a rotation, or null. A replaced
    /// token works until its `expires_at`, the end of the overlap.
    #[schema(value_type = Option<String>, required = true)]
    replaced_by: Option<Ulid>,
    /// Why it was revoked; null unless revoked.
    #[schema(required = true)]
    revoked_reason: Option<RevokeReason>,
    /// Where it was reported leaked, when it was revoked for a leak report
    /// that said; null otherwise. Untrusted text: anyone may report a leak.
    #[schema(required = true)]
    leak_url: Option<String>,
    /// The client address ranges (CIDRs) calls may come from; null when
    /// calls may come from anywhere.
    #[schema(required = true, max_items = 32)]
    allowed_cidrs: Option<Vec<String>>,
    /// When the token starts working; null when it worked at once. Before
    /// then its status is `active` but every call answers `401`
    /// `token_not_yet_valid`.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    not_before: Option<Timestamp>,
    /// Whether the token may rotate itself (`POST /v1/tokens/self/rotate`
    /// with the token as the bearer); a rotation's successor keeps it.
    self_rotate: bool,
}

impl TokenJson {
    pub fn new(view: TokenView, now: Timestamp, last_used_at: Option<Timestamp>) -> Self {
        TokenJson {
            status: view.status(now),
            id: view.id,
            description: view.description,
            expiration: view.expiration,
            scopes: view.scopes,
            workspaces: view.workspaces,
            created_at: view.created_at,
            expires_at: view.expires_at,
            revoked_at: view.revoked_at,
            last_used_at,
            replaces: view.replaces,
            replaced_by: view.replaced_by,
            revoked_reason: view.revoked_reason,
            leak_url: view.leak_url,
            allowed_cidrs: (!view.allowed_cidrs.is_empty()).then_some(view.allowed_cidrs),
            not_before: view.not_before,
            self_rotate: view.self_rotate,
        }
    }
}

/// `views` as the API shows them, with their last uses (read here, or
/// where each token's partition is served).
async fn tokens_json(state: &AppState, views: Vec<TokenView>) -> Result<Vec<TokenJson>, ApiError> {
    let ids: Vec<Ulid> = views.iter().map(|v| v.id).collect();
    let mut last_used = state.usage.last_used(&ids).await?;
    let now = state.clock.now();
    Ok(views
        .into_iter()
        .map(|v| {
            let used = last_used.remove(&v.id).flatten();
            TokenJson::new(v, now, used)
        })
        .collect())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// 1 to 100 characters after trimming; no control (Cc), format (Cf) or
    /// line and paragraph separator (Zl, Zp) characters.
    #[schema(min_length = 1, max_length = 100, example = "ERP Integration")]
    description: String,
    #[schema(value_type = Expiration, example = "3m")]
    expiration: String,
    /// A non-empty subset of read, write, delete.
    #[schema(value_type = Vec<Scope>, min_items = 1, example = json!(["read", "write"]))]
    scopes: Vec<String>,
    /// A non-empty list of the caller's workspaces.
    #[schema(min_items = 1, example = json!(["acme"]))]
    workspaces: Vec<String>,
    /// The client address ranges calls may come from: 1 to 32 IPv4 or IPv6
    /// CIDR blocks without host bits set (a bare address is a block of
    /// one); from anywhere else a call answers `403` `address_not_allowed`.
    /// Left out: from anywhere.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 32, example = json!(["192.0.2.0/24", "2001:db8::/32"]))]
    allowed_cidrs: Option<Vec<String>>,
    /// When the token starts working (RFC 3339), at most 90 days ahead and
    /// before it expires; until then a call answers `401`
    /// `token_not_yet_valid`. Left out: at once.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-24T08:00:00Z")]
    not_before: Option<String>,
    /// `true`: the token may rotate itself, with itself as the bearer of
    /// `POST /v1/tokens/self/rotate` (for machines renewing their own
    /// secret); its successors keep this. Left out: `false`.
    #[serde(default)]
    self_rotate: bool,
}

/// A new token's fences, as checked by [`fences`].
struct Fences {
    allowed_cidrs: Vec<String>,
    not_before: Option<Timestamp>,
}

/// The API's rules for a new token's fences (`enspace_core::fence`), at
/// `now` for a token of `expiration`.
fn fences(
    allowed_cidrs: Option<Vec<String>>,
    not_before: Option<String>,
    now: Timestamp,
    expiration: Expiration,
) -> Result<Fences, ApiError> {
    let refused = |e: fence::FenceError| ApiError::invalid(e.code(), e.field(), e.to_string());
    let allowed_cidrs = allowed_cidrs
        .map(|given| fence::allowed_cidrs(&given))
        .transpose()
        .map_err(refused)?
        .unwrap_or_default();
    let not_before = not_before
        .map(|text| {
            let at = text.parse::<Timestamp>().map_err(|_| {
                ApiError::invalid(
                    "invalid_not_before",
                    "not_before",
                    "`not_before` must be an RFC 3339 time, e.g. 2026-12-24T08:00:00Z",
                )
            })?;
            fence::not_before(at, now, expiration.expires_at(now)).map_err(refused)
        })
        .transpose()?;
    Ok(Fences {
        allowed_cidrs,
        not_before,
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenCreatedResponse {
    #[schema(value_type = TokenJson)]
    token: TokenJson,
    /// `ens_pat_…`: shown here once and never again.
    #[schema(pattern = "^ens_pat_[0-9A-Za-z]{38}$")]
    secret: String,
}

/// A creation request that keeps every rule.
struct ValidToken {
    description: String,
    expiration: Expiration,
    scopes: Vec<Scope>,
    workspaces: Vec<String>,
    fences: Fences,
    self_rotate: bool,
}

/// A description as the API takes it: trimmed, 1 to 100 characters, none
/// that hides or reorders text.
pub(crate) fn valid_description(given: &str) -> Result<String, ApiError> {
    let description = given.trim().to_owned();
    let chars = description.chars().count();
    if chars == 0 || chars > DESCRIPTION_MAX_CHARS {
        return Err(ApiError::invalid(
            "invalid_description",
            "description",
            "`description` must be 1 to 100 characters",
        ));
    }
    if description
        .chars()
        .any(enspace_core::text::hides_or_reorders)
    {
        return Err(ApiError::invalid(
            "invalid_description",
            "description",
            "`description` must not contain control, format or line and paragraph separator \
             characters (such as U+202E, U+200B, U+FEFF or U+2028)",
        ));
    }
    Ok(description)
}

/// The API's rules for a new token; the first broken rule is the answer.
fn validate(
    caller: &Caller,
    req: CreateTokenRequest,
    now: Timestamp,
) -> Result<ValidToken, ApiError> {
    let description = valid_description(&req.description)?;
    let expiration = Expiration::parse(&req.expiration).ok_or_else(|| {
        ApiError::invalid(
            "invalid_expiration",
            "expiration",
            "`expiration` must be one of 1m, 2m, 3m, 6m, 1y, 2y, never",
        )
    })?;
    if req.scopes.is_empty() {
        return Err(ApiError::invalid(
            "invalid_scopes",
            "scopes",
            "`scopes` must name at least one of read, write, delete",
        ));
    }
    let mut scopes = Vec::with_capacity(3);
    for s in &req.scopes {
        let scope = Scope::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "invalid_scopes",
                "scopes",
                "`scopes` may only contain read, write, delete",
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes.sort();
    if req.workspaces.is_empty() {
        return Err(ApiError::invalid(
            "invalid_workspaces",
            "workspaces",
            "`workspaces` must name at least one of your workspaces",
        ));
    }
    let mut workspaces: Vec<String> = Vec::new();
    for ws in &req.workspaces {
        if !caller.user.belongs_to(ws) {
            return Err(ApiError::invalid(
                "workspace_not_allowed",
                "workspaces",
                "`workspaces` may only name workspaces you belong to",
            ));
        }
        if !workspaces.contains(ws) {
            workspaces.push(ws.clone());
        }
    }
    let fences = fences(req.allowed_cidrs, req.not_before, now, expiration)?;
    Ok(ValidToken {
        description,
        expiration,
        scopes,
        workspaces,
        fences,
        self_rotate: req.self_rotate,
    })
}

pub(crate) fn command_error(e: CommandError) -> ApiError {
    match e {
        CommandError::PolicyViolation { workspace, why } => ApiError::invalid(
            "policy_violation",
            "expiration",
            format!("the policy of workspace `{workspace}` forbids this expiration: {why}"),
        ),
        CommandError::TokenNotFound => token_not_found(),
        CommandError::TokenInactive(why) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "token_inactive",
            format!("this token is not active: {why}"),
        ),
        CommandError::DuplicateToken => ApiError::internal("generated a duplicate token id"),
        CommandError::Store(cause) => ApiError::unavailable(cause),
        CommandError::NotWriter | CommandError::Unavailable(_) => {
            tracing::warn!(error = %e, "a change could not be recorded");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "writer_unavailable",
                "no control-plane process can record changes right now; try again after the time in Retry-After",
            )
            .retry_after(1)
        }
    }
}

pub(super) fn quota_error(state: &AppState, e: QuotaError) -> ApiError {
    match e {
        QuotaError::LimitReached(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "token_limit_reached",
            format!(
                "you hold {} active tokens, the most allowed; revoke one you no longer use first",
                state.quota.max()
            ),
        ),
        QuotaError::Store(e) => ApiError::unavailable(e),
    }
}

/// Create a token. The answer is the only one that ever carries its secret.
/// A user holds at most 200 active tokens (`--max-tokens-per-user`): one
/// more is `422` `token_limit_reached`.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("session" = []), ("session_cookie" = [])),
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Created; `Location` names it", body = TokenCreatedResponse,
            headers(("Location" = String, description = "/v1/tokens/{id}"))),
        enspace_http::responses::SignedIn,
        enspace_http::responses::JsonBody,
    )
)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> Result<Response, ApiError> {
    let ValidToken {
        description,
        expiration,
        scopes,
        workspaces,
        fences,
        self_rotate,
    } = validate(&caller, req, state.clock.now())?;
    let reservation = {
        let (state, user) = (state.clone(), caller.user.id.clone());
        blocking(move || {
            state
                .quota
                .reserve(&user, state.clock.now())
                .map_err(|e| quota_error(&state, e))
        })
        .await?
    };
    let secret = PatSecret::generate();
    let view = state
        .writer
        .execute(Command::CreateToken(CreateToken {
            token_id: Ulid::nil(), // named by the writer
            actor: caller.user.id.clone(),
            description,
            expiration,
            scopes,
            workspaces,
            secret_hash: secret.hash(),
            allowed_cidrs: fences.allowed_cidrs,
            not_before: fences.not_before,
            self_rotate,
            decoy: false,
        }))
        .await
        .map_err(command_error)?;
    reservation.commit();
    tracing::info!(token.id = %view.id, user.id = %view.user_id, "created token {}", view.id);
    Ok(created(&state, view, &secret))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenJson>,
    /// Paged lists only: pass as `cursor` for the next (older) page; null
    /// on the last page. Absent when the whole list was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    next_cursor: Option<Option<String>>,
}

/// Largest (and default) page of `GET /v1/tokens?limit=…`.
pub const MAX_PAGE: usize = 100;

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// The caller's tokens, newest first, revoked and expired ones included:
/// all of them, or with `limit` or `cursor` a page at a time.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", security(("session" = []), ("session_cookie" = [])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Tokens per page (default 100 once `limit` or `cursor` is given); without either, the whole list"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The caller's tokens, newest first; follow `next_cursor` until it is null", body = TokenList),
        enspace_http::responses::SignedIn,
        (status = 400, response = inline(enspace_http::responses::BadRequest)),
        (status = 422, response = inline(enspace_http::responses::Unprocessable)),
    )
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<TokenList>, ApiError> {
    let user = caller.user.id;
    if q.limit.is_none() && q.cursor.is_none() {
        let projections = state.store.projections.clone();
        let mut views = blocking(move || projections.tokens_of_user(&user)).await?;
        // Decoys are listed apart (`GET /v1/decoys`).
        views.retain(|v| !v.decoy);
        // The whole list, shaped as it always was (no `next_cursor`).
        return Ok(Json(TokenList {
            tokens: tokens_json(&state, views).await?,
            next_cursor: None,
        }));
    }
    let limit = super::paging::limit(q.limit.as_deref(), MAX_PAGE, MAX_PAGE)?;
    // The cursor is the id of the last token of the previous page.
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            Ulid::from_string(c).map_err(|_| {
                ApiError::invalid(
                    "invalid_cursor",
                    "cursor",
                    "`cursor` must be the `next_cursor` of an earlier page",
                )
            })
        })
        .transpose()?;
    let projections = state.store.projections.clone();
    let (views, next) =
        blocking(move || projections.tokens_of_user_page(&user, before, limit)).await?;
    Ok(Json(TokenList {
        tokens: tokens_json(&state, views).await?,
        next_cursor: Some(next.map(|id| id.to_string())),
    }))
}

/// One of the caller's tokens.
#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens", security(("session" = []), ("session_cookie" = [])), params(("id" = String, Path, description = "The token id (a ULID)")),
    responses(
        (status = 200, description = "The token", body = TokenJson),
        enspace_http::responses::OwnToken,
    )
)]
pub async fn get_token(
    State(state): State<AppState>,
    OwnToken { token, .. }: OwnToken,
) -> Result<Json<TokenJson>, ApiError> {
    let last_used = state.usage.last_used(&[token.id]).await?.remove(&token.id);
    Ok(Json(TokenJson::new(
        token,
        state.clock.now(),
        last_used.flatten(),
    )))
}

/// Revoke a token, at once on every API node. Revoking it again changes nothing.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", security(("session" = []), ("session_cookie" = [])), params(("id" = String, Path, description = "The token id (a ULID)")),
    responses(
        (status = 204, description = "Revoked"),
        enspace_http::responses::OwnToken,
    )
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    OwnToken {
        caller,
        token: before,
    }: OwnToken,
) -> Result<StatusCode, ApiError> {
    let token_id = before.id;
    state
        .writer
        .execute(Command::RevokeToken {
            token_id,
            actor: caller.user.id.clone(),
            reason: RevokeReason::User,
        })
        .await
        .map_err(command_error)?;
    if before.revoked_at.is_none() {
        tracing::info!(token.id = %token_id, user.id = %caller.user.id, "revoked token {token_id}");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `201` with the new token, its one showing of the secret, and where it is.
pub(super) fn created(state: &AppState, view: TokenView, secret: &PatSecret) -> Response {
    let location = format!("/v1/tokens/{}", view.id);
    let body = TokenCreatedResponse {
        token: TokenJson::new(view, state.clock.now(), None),
        secret: secret.expose().to_owned(),
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// Tokens are immutable: to change one, create another.
#[utoipa::path(put, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token id (a ULID)")),
    responses((status = 405, response = inline(enspace_http::responses::MethodNotAllowed)))
)]
pub async fn replace_token() -> ApiError {
    immutable()
}

/// Tokens are immutable: to change one, create another.
#[utoipa::path(patch, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token id (a ULID)")),
    responses((status = 405, response = inline(enspace_http::responses::MethodNotAllowed)))
)]
pub async fn patch_token() -> ApiError {
    immutable()
}

fn immutable() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "token_immutable",
        "tokens cannot be edited; create a new token and revoke this one",
    )
    .with_header(header::ALLOW, "GET, DELETE")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventList {
    events: Vec<AuditEvent>,
}

/// A token's history: its events from the audit log.
#[utoipa::path(get, path = "/v1/tokens/{id}/events", tag = "tokens", security(("session" = []), ("session_cookie" = [])), params(("id" = String, Path, description = "The token id (a ULID)")),
    responses(
        (status = 200, description = "The token's events in seq order", body = EventList),
        enspace_http::responses::OwnToken,
    )
)]
pub async fn token_events(
    State(state): State<AppState>,
    OwnToken { token, .. }: OwnToken,
) -> Result<Json<EventList>, ApiError> {
    let id = token.id;
    let keys = state.keys()?;
    let events = blocking(move || {
        let entries = state.store.events_of(id)?;
        Ok::<_, StoreError>(entries.iter().map(|e| e.audit(&keys)).collect())
    })
    .await?;
    Ok(Json(EventList { events }))
}
