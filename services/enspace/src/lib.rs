//! The processes the `enspace` binary runs, composed from the service
//! crates. A library so that tests can run them in-process.

pub mod cli;
pub mod event_key;
pub mod progress;
pub mod restore;
pub mod run;

/// The OpenAPI document of the whole product: the token service's routes and
/// an API node's, as `enspace serve` serves them (`schemas/openapi.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    enspace_tokens::openapi::document([
        enspace_tokens::api_router().into_openapi(),
        enspace_api_node::api_router().into_openapi(),
    ])
}

/// The standalone JSON Schemas (2020-12) in `schemas/`, by file name: each
/// is a component of the OpenAPI document with the components it refers to
/// under `$defs`.
pub fn json_schemas() -> Vec<(&'static str, serde_json::Value)> {
    const FILES: [(&str, &str); 12] = [
        ("event_envelope.json", "EventEnvelopeWire"),
        ("token_created.json", "TokenCreated"),
        ("token_revoked.json", "TokenRevoked"),
        ("token_rotated.json", "TokenRotated"),
        ("workspace_policy_set.json", "WorkspacePolicySet"),
        ("audit_event.json", "AuditEvent"),
        ("audit_export_header.json", "ExportHeader"),
        ("request_record.json", "RequestRecord"),
        ("request_record_batch.json", "RequestRecordBatch"),
        ("token.json", "Token"),
        ("problem.json", "ProblemDetails"),
        ("directory.json", "DirectoryFile"),
    ];
    let doc = serde_json::to_value(openapi_document()).unwrap_or_default();
    let components = &doc["components"]["schemas"];
    FILES
        .iter()
        .map(|(file, name)| {
            let mut defs = serde_json::Map::new();
            let mut pending = vec![(*name).to_owned()];
            while let Some(next) = pending.pop() {
                if defs.contains_key(&next) {
                    continue;
                }
                let schema = components[&next].clone();
                collect_refs(&schema, &mut pending);
                defs.insert(next, schema);
            }
            let mut root = defs.remove(*name).unwrap_or_default();
            if let Some(obj) = root.as_object_mut() {
                obj.insert(
                    "$schema".into(),
                    "https://json-schema.org/draft/2020-12/schema".into(),
                );
                obj.insert("$id".into(), format!("urn:enspace:schema:{file}").into());
                obj.insert("title".into(), (*name).into());
                if !defs.is_empty() {
                    obj.insert("$defs".into(), defs.into());
                }
            }
            let text = root
                .to_string()
                .replace("#/components/schemas/", "#/$defs/");
            (*file, serde_json::from_str(&text).unwrap_or_default())
        })
        .collect()
}

fn collect_refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref"
                    && let Some(name) = v
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    out.push(name.to_owned());
                }
                collect_refs(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
