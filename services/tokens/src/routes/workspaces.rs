//! `/v1/workspaces/{ws}/…`: what a workspace's admins see and do: every
//! token that can reach the workspace, revoking one, and the workspace's
//! token policy (which its members read too, for the create dialog).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use enspace_core::{Expiration, Scope, TokenStatus, TokenView, WorkspacePolicy};
use enspace_http::{ApiError, ApiJson};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::auth::Caller;
use crate::routes::tokens::command_error;
use crate::state::AppState;
use enspace_store::commands::{Command, CommandError};

fn not_admin() -> ApiError {
    ApiError::forbidden(
        "not_workspace_admin",
        "only an admin of this workspace may do this",
    )
}

/// The caller, if they administer `workspace`.
fn admin(caller: &Caller, workspace: &str) -> Result<(), ApiError> {
    if caller.user.administers(workspace) {
        Ok(())
    } else {
        Err(not_admin())
    }
}

/// A token as a workspace admin sees it: whose it is, what it may do, and
/// whether it obeys the workspace's policy; never the secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceToken {
    id: Ulid,
    /// The owner's user id.
    owner: String,
    /// The owner's display name, when the directory still has them.
    #[schema(required = true)]
    owner_name: Option<String>,
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
    #[schema(required = true)]
    revoked_reason: Option<enspace_core::token::RevokeReason>,
    status: TokenStatus,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    last_used_at: Option<Timestamp>,
    /// Whether its expiration obeys the workspace's current policy (a
    /// policy binds new tokens; older ones over it are listed here).
    compliant: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkspaceTokens {
    workspace: String,
    policy: WorkspacePolicy,
    /// Newest first, revoked and expired ones included.
    tokens: Vec<WorkspaceToken>,
}

/// Every token that can reach the workspace (admins only).
#[utoipa::path(get, path = "/v1/workspaces/{ws}/tokens", tag = "workspaces", security(("session" = []), ("session_cookie" = [])),
    params(("ws" = String, Path, description = "The workspace id")),
    responses(
        (status = 200, description = "The workspace's tokens, newest first", body = WorkspaceTokens),
        enspace_http::responses::SignedIn,
    )
)]
pub async fn list_workspace_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Path(workspace): Path<String>,
) -> Result<Json<WorkspaceTokens>, ApiError> {
    admin(&caller, &workspace)?;
    let now = state.clock.now();
    let (ws, projections) = (workspace.clone(), state.store.projections.clone());
    let (policy, views) = enspace_http::blocking(move || {
        Ok::<_, enspace_store::StoreError>((
            projections.policy(&ws)?,
            projections.tokens_in_workspace(&ws)?,
        ))
    })
    .await?;
    let ids: Vec<Ulid> = views.iter().map(|v| v.id).collect();
    // Read here, or where each token's partition is served.
    let mut last_used = state.usage.last_used(&ids).await?;
    let tokens = views
        .into_iter()
        .map(|view| {
            let used = last_used.remove(&view.id).flatten();
            workspace_token(&state, &policy, view, now, used)
        })
        .collect();
    Ok(Json(WorkspaceTokens {
        workspace,
        policy,
        tokens,
    }))
}

fn workspace_token(
    state: &AppState,
    policy: &WorkspacePolicy,
    view: TokenView,
    now: Timestamp,
    last_used_at: Option<Timestamp>,
) -> WorkspaceToken {
    WorkspaceToken {
        id: view.id,
        owner_name: state.directory.user(&view.user_id).map(|u| u.name.clone()),
        compliant: policy.complies(&view),
        status: view.status(now),
        last_used_at,
        owner: view.user_id,
        description: view.description,
        expiration: view.expiration,
        scopes: view.scopes,
        workspaces: view.workspaces,
        created_at: view.created_at,
        expires_at: view.expires_at,
        revoked_at: view.revoked_at,
        revoked_reason: view.revoked_reason,
    }
}

/// Revoke a token that can reach the workspace (admins only), at once on
/// every API node, with reason `admin`; its owner is notified. Revoking it
/// again changes nothing.
#[utoipa::path(delete, path = "/v1/workspaces/{ws}/tokens/{id}", tag = "workspaces", security(("session" = []), ("session_cookie" = [])),
    params(("ws" = String, Path, description = "The workspace id"), ("id" = String, Path, description = "The token id (a ULID)")),
    responses(
        (status = 204, description = "Revoked"),
        enspace_http::responses::SignedIn,
        (status = 404, response = inline(enspace_http::responses::NotFound)),
    )
)]
pub async fn revoke_workspace_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((workspace, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin(&caller, &workspace)?;
    let not_found = || {
        ApiError::not_found(
            "token_not_found",
            "no token with this id can reach this workspace",
        )
    };
    let token_id = Ulid::from_string(&id).map_err(|_| not_found())?;
    let view = state
        .writer
        .execute(Command::AdminRevoke {
            token_id,
            actor: caller.user.id.clone(),
            workspace: workspace.clone(),
        })
        .await
        .map_err(|e| match e {
            CommandError::TokenNotFound => not_found(),
            e => command_error(e),
        })?;
    tracing::info!(token.id = %token_id, user.id = %caller.user.id, workspace = %workspace,
        owner = %view.user_id, "an admin revoked token {token_id}");
    Ok(StatusCode::NO_CONTENT)
}

/// The workspace's token policy (its members and admins).
#[utoipa::path(get, path = "/v1/workspaces/{ws}/policy", tag = "workspaces", security(("session" = []), ("session_cookie" = [])),
    params(("ws" = String, Path, description = "The workspace id")),
    responses(
        (status = 200, description = "The policy; the default allows any expiration", body = WorkspacePolicy),
        enspace_http::responses::SignedIn,
    )
)]
pub async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(workspace): Path<String>,
) -> Result<Json<WorkspacePolicy>, ApiError> {
    if !caller.user.belongs_to(&workspace) && !caller.user.administers(&workspace) {
        return Err(ApiError::forbidden(
            "not_a_member",
            "only members and admins of this workspace may read its policy",
        ));
    }
    let projections = state.store.projections.clone();
    Ok(Json(
        enspace_http::blocking(move || projections.policy(&workspace)).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// The longest expiration new tokens may have (`1m` … `2y`), or null
    /// for any.
    #[schema(value_type = Option<Expiration>, required = true)]
    max_lifetime: Option<String>,
    /// Whether new tokens must expire (no `never`).
    require_expiration: bool,
}

/// Set the workspace's token policy (admins only), recorded in the event
/// log. It binds tokens created or rotated from now on; tokens already over
/// it are listed as non-compliant. Setting the same policy again records
/// nothing.
#[utoipa::path(put, path = "/v1/workspaces/{ws}/policy", tag = "workspaces", security(("session" = []), ("session_cookie" = [])),
    params(("ws" = String, Path, description = "The workspace id")),
    request_body = PolicyRequest,
    responses(
        (status = 200, description = "The policy now in force", body = WorkspacePolicy),
        enspace_http::responses::SignedIn,
        enspace_http::responses::JsonBody,
    )
)]
pub async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(workspace): Path<String>,
    ApiJson(req): ApiJson<PolicyRequest>,
) -> Result<Json<WorkspacePolicy>, ApiError> {
    admin(&caller, &workspace)?;
    let max_lifetime = req
        .max_lifetime
        .as_deref()
        .map(|preset| {
            Expiration::parse(preset)
                .filter(|e| *e != Expiration::Never)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_max_lifetime",
                        "max_lifetime",
                        "`max_lifetime` must be one of 1m, 2m, 3m, 6m, 1y, 2y, or null for none",
                    )
                })
        })
        .transpose()?;
    let policy = WorkspacePolicy {
        max_lifetime,
        require_expiration: req.require_expiration,
    };
    state
        .writer
        .record(Command::SetPolicy {
            workspace: workspace.clone(),
            actor: caller.user.id.clone(),
            policy: policy.clone(),
        })
        .await
        .map_err(command_error)?;
    tracing::info!(user.id = %caller.user.id, workspace = %workspace, ?policy, "set the token policy of {workspace}");
    Ok(Json(policy))
}
