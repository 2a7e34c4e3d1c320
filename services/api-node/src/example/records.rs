//! The example resource `records`, kept in the node's memory;
//! it stands in for ENSPACE's data. Every route sits behind `require_token`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use enspace_http::{ApiError, ApiJson};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::NodeState;
use crate::verify::VerifiedToken;

const MAX_RECORDS_PER_WORKSPACE: usize = 10_000;
const TITLE_MAX_CHARS: usize = 200;
const BODY_MAX_CHARS: usize = 10_000;
const QUERY_MAX_CHARS: usize = 200;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Record {
    id: Ulid,
    workspace: String,
    title: String,
    body: String,
    created_by: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

#[derive(Default)]
pub struct RecordStore {
    by_workspace: RwLock<HashMap<String, BTreeMap<Ulid, Record>>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    /// 1 to 200 characters, no control characters.
    title: String,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
pub struct Search {
    q: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RecordList {
    records: Vec<Record>,
}

fn validate(input: RecordInput) -> Result<(String, String), ApiError> {
    let title = input.title.trim().to_owned();
    let n = title.chars().count();
    if n == 0 || n > TITLE_MAX_CHARS || title.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_title",
            "title",
            "`title` must be 1 to 200 characters without control characters",
        ));
    }
    if input.body.chars().count() > BODY_MAX_CHARS {
        return Err(ApiError::invalid(
            "invalid_body",
            "body",
            "`body` is at most 10000 characters",
        ));
    }
    Ok((title, input.body))
}

fn not_found() -> ApiError {
    ApiError::not_found(
        "record_not_found",
        "no record with this id in this workspace",
    )
}

fn parse_id(id: &str) -> Result<Ulid, ApiError> {
    Ulid::from_string(id).map_err(|_| not_found())
}

fn poisoned() -> ApiError {
    ApiError::internal("record store lock poisoned")
}

/// List or search a workspace's records (scope `read`).
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/records", tag = "records", security(("pat" = [])),
    params(("ws" = String, Path, description = "Workspace id; the token must be granted it"), ("q" = Option<String>, Query, description = "Case-insensitive text to find in title or body")),
    responses(
        (status = 200, description = "Up to 100 records, newest first", body = RecordList),
        enspace_http::responses::ByToken,
        (status = 422, response = inline(enspace_http::responses::Unprocessable)),
    )
)]
pub async fn list_records(
    State(node): State<NodeState>,
    Path(ws): Path<String>,
    Query(search): Query<Search>,
) -> Result<Json<RecordList>, ApiError> {
    let q = search.q.unwrap_or_default().to_lowercase();
    if q.chars().count() > QUERY_MAX_CHARS {
        return Err(ApiError::invalid(
            "invalid_query",
            "q",
            "`q` is at most 200 characters",
        ));
    }
    let all = node.records.by_workspace.read().map_err(|_| poisoned())?;
    let records = all
        .get(&ws)
        .map(|records| {
            records
                .values()
                .rev()
                .filter(|r| {
                    q.is_empty()
                        || r.title.to_lowercase().contains(&q)
                        || r.body.to_lowercase().contains(&q)
                })
                .take(100)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(RecordList { records }))
}

/// View one record (scope `read`).
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/records/{id}", tag = "records", security(("pat" = [])),
    params(("ws" = String, Path, description = "Workspace id; the token must be granted it"), ("id" = String, Path, description = "Record id (a ULID)")),
    responses(
        (status = 200, description = "The record", body = Record),
        enspace_http::responses::ByToken,
        (status = 404, response = inline(enspace_http::responses::NotFound)),
    )
)]
pub async fn get_record(
    State(node): State<NodeState>,
    Path((ws, id)): Path<(String, String)>,
) -> Result<Json<Record>, ApiError> {
    let id = parse_id(&id)?;
    let all = node.records.by_workspace.read().map_err(|_| poisoned())?;
    all.get(&ws)
        .and_then(|r| r.get(&id))
        .cloned()
        .map(Json)
        .ok_or_else(not_found)
}

/// Create a record (scope `write`).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/records", tag = "records", security(("pat" = [])),
    params(("ws" = String, Path, description = "Workspace id; the token must be granted it")),
    request_body = RecordInput,
    responses(
        (status = 201, description = "Created", body = Record),
        enspace_http::responses::ByToken,
        enspace_http::responses::JsonBody,
    )
)]
pub async fn create_record(
    State(node): State<NodeState>,
    token: VerifiedToken,
    Path(ws): Path<String>,
    ApiJson(input): ApiJson<RecordInput>,
) -> Result<Response, ApiError> {
    let (title, body) = validate(input)?;
    let now = node.clock.now();
    let record = Record {
        id: Ulid::new(),
        workspace: ws.clone(),
        title,
        body,
        created_by: token.user_id.to_string(),
        created_at: now,
        updated_at: now,
    };
    let mut all = node.records.by_workspace.write().map_err(|_| poisoned())?;
    let records = all.entry(ws.clone()).or_default();
    if records.len() >= MAX_RECORDS_PER_WORKSPACE {
        return Err(ApiError::invalid(
            "too_many_records",
            "workspace",
            "this example workspace holds at most 10000 records",
        ));
    }
    records.insert(record.id, record.clone());
    let location = format!("/api/v1/workspaces/{ws}/records/{}", record.id);
    let mut response = (StatusCode::CREATED, Json(record)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Update a record (scope `write`).
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/records/{id}", tag = "records", security(("pat" = [])),
    params(("ws" = String, Path, description = "Workspace id; the token must be granted it"), ("id" = String, Path, description = "Record id (a ULID)")),
    request_body = RecordInput,
    responses(
        (status = 200, description = "Updated", body = Record),
        enspace_http::responses::ByToken,
        enspace_http::responses::JsonBody,
        (status = 404, response = inline(enspace_http::responses::NotFound)),
    )
)]
pub async fn update_record(
    State(node): State<NodeState>,
    Path((ws, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<RecordInput>,
) -> Result<Json<Record>, ApiError> {
    let id = parse_id(&id)?;
    let (title, body) = validate(input)?;
    let mut all = node.records.by_workspace.write().map_err(|_| poisoned())?;
    let record = all
        .get_mut(&ws)
        .and_then(|r| r.get_mut(&id))
        .ok_or_else(not_found)?;
    record.title = title;
    record.body = body;
    record.updated_at = node.clock.now();
    Ok(Json(record.clone()))
}

/// Delete a record (scope `delete`).
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/records/{id}", tag = "records", security(("pat" = [])),
    params(("ws" = String, Path, description = "Workspace id; the token must be granted it"), ("id" = String, Path, description = "Record id (a ULID)")),
    responses(
        (status = 204, description = "Deleted"),
        enspace_http::responses::ByToken,
        (status = 404, response = inline(enspace_http::responses::NotFound)),
    )
)]
pub async fn delete_record(
    State(node): State<NodeState>,
    Path((ws, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let mut all = node.records.by_workspace.write().map_err(|_| poisoned())?;
    all.get_mut(&ws)
        .and_then(|r| r.remove(&id))
        .ok_or_else(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn new_store() -> Arc<RecordStore> {
    Arc::new(RecordStore::default())
}
