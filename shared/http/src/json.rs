//! `ApiJson<T>`: a JSON body extractor whose every rejection is problem
//! details: 400 for what is not JSON, 422 naming the field for JSON that
//! breaks the shape, 413 over the body limit, 415 for another media type.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Largest body any route accepts.
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the body is larger than this route takes",
                )
            } else {
                ApiError::malformed_json("the body could not be read")
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body: syntax errors are 400, shape errors are 422 naming the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The whole body must be one JSON value: a valid object followed by
    // anything else is malformed too, and that is decided before its shape.
    if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
        return Err(ApiError::malformed_json("the body is not valid JSON"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                if let Some(rest) = message.strip_prefix("unknown field `") {
                    let name = rest.split('`').next().unwrap_or_default();
                    // The path already ends in the unknown key; at the top it is `.`.
                    let field = if path == "." { name.to_owned() } else { path };
                    if crate::error::echoable(&field) {
                        ApiError::invalid(
                            "unknown_field",
                            &field,
                            format!("`{field}` is not a field of this request"),
                        )
                    } else {
                        // Named by the client, and too long or secret-like
                        // to repeat: say what is wrong without it.
                        ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "unknown_field",
                            format!(
                                "the body has a field that is not part of this request; its name \
                                 is not repeated because it is over {} characters or looks like a secret",
                                crate::error::MAX_ECHO_CHARS
                            ),
                        )
                    }
                } else if let Some(rest) = message.strip_prefix("missing field `") {
                    let name = rest.split('`').next().unwrap_or_default();
                    ApiError::invalid("missing_field", name, format!("`{name}` is required"))
                } else {
                    // serde's message can quote the offending value; we name only the field.
                    let field = if path == "." || !crate::error::echoable(&path) {
                        "body".to_owned()
                    } else {
                        path
                    };
                    ApiError::invalid(
                        "invalid_type",
                        &field,
                        format!("`{field}` has the wrong type"),
                    )
                }
            }
            _ => ApiError::malformed_json("the body is not valid JSON"),
        }
    })
}
