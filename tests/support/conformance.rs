//! Every response is checked against the committed OpenAPI document
//! (`schemas/openapi.json`, what clients are given, not the one the code
//! generates): a documented route that answers with an undocumented status,
//! or with a JSON body that does not validate against the documented
//! schema, fails the test that saw it. Twice over: [`layer`] wraps the
//! in-process servers (`TestApp`, `ServeApp`) and turns a violation into a
//! 500 whose body says why, and `ApiClient` checks every response it
//! receives, from those servers and from the `enspace` binaries alike.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

static DOC: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../schemas/openapi.json"))
        .expect("schemas/openapi.json is JSON")
});

type Validators = Mutex<HashMap<String, Arc<jsonschema::Validator>>>;
static VALIDATORS: LazyLock<Validators> = LazyLock::new(Default::default);

/// The validator for a schema object of the document (refs resolve into
/// the document's components).
pub fn validator(schema: &Value) -> Arc<jsonschema::Validator> {
    let key = schema.to_string();
    let mut cache = VALIDATORS.lock().expect("lock");
    if let Some(v) = cache.get(&key) {
        return v.clone();
    }
    let mut root = schema.clone();
    if let Some(obj) = root.as_object_mut() {
        obj.insert("components".into(), DOC["components"].clone());
    }
    let v = Arc::new(
        jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .expect("schema compiles"),
    );
    cache.insert(key, v.clone());
    v
}

fn template_matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

/// Checks one response; `Err` says what does not conform.
pub fn check(
    method: &Method,
    path: &str,
    status: StatusCode,
    content_type: &str,
    body: &[u8],
) -> Result<(), String> {
    let Some(paths) = DOC["paths"].as_object() else {
        return Ok(());
    };
    let Some((template, item)) = paths.iter().find(|(t, _)| template_matches(t, path)) else {
        return Ok(()); // not an API route (the UI, an unknown path)
    };
    let Some(operation) = item.get(method.as_str().to_ascii_lowercase()) else {
        return Ok(()); // a method the route does not take: 405, checked elsewhere
    };
    let Some(response) = operation["responses"].get(status.as_str()) else {
        return Err(format!(
            "{method} {template} answered {status}, which is not documented"
        ));
    };
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let Some(content) = response.get("content") else {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {template} {status}: documented without a body, sent one"
            ))
        };
    };
    let documented = content.as_object().and_then(|types| {
        types
            .iter()
            .find(|(t, _)| t.split(';').next().unwrap_or_default().trim() == media)
    });
    let Some(schema) = documented.and_then(|(_, c)| c.get("schema")) else {
        return Err(format!(
            "{method} {template} {status}: content type `{media}` is not documented"
        ));
    };
    if !media.ends_with("json") {
        return Ok(());
    }
    let instance: Value = serde_json::from_slice(body)
        .map_err(|e| format!("{method} {template} {status}: body is not JSON: {e}"))?;
    let errors: Vec<String> = validator(schema)
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {template} {status}: body does not match its schema: {}",
            errors.join("; ")
        ))
    }
}

async fn conform(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "conformance: unreadable body",
        )
            .into_response();
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match check(&method, &path, parts.status, content_type, &bytes) {
        Ok(()) => Response::from_parts(parts, Body::from(bytes)),
        Err(violation) => {
            eprintln!("CONFORMANCE VIOLATION: {violation}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("conformance violation: {violation}"),
            )
                .into_response()
        }
    }
}

/// Wraps a finished router so that every response is checked.
pub fn layer(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(conform))
}
