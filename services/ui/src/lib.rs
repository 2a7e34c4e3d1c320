//! The settings UI: one HTML page (`/`, `/settings/…` deep links) and its
//! static assets, all compiled into the binary. The page talks only to the
//! public HTTP API with the session cookie; this module serves bytes.
//!
//! Assets live under `/assets/{version}/…`, where `version` is a hash of
//! every asset computed at compile time, so they can be cached for a year:
//! a new build has a new version and the page (never cached without
//! revalidation) points at it. Module imports between scripts are relative,
//! so they stay within the same version.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use enspace_http::ApiError;

/// Everything the page may load: itself, same-origin scripts, styles and
/// API calls, and `data:` images. No inline script or style, no frames.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
    script("app.js", include_bytes!("../assets/app.js")),
    script("api.js", include_bytes!("../assets/api.js")),
    script("audit.js", include_bytes!("../assets/audit.js")),
    script("chart.js", include_bytes!("../assets/chart.js")),
    script("dialogs.js", include_bytes!("../assets/dialogs.js")),
    script("decoys.js", include_bytes!("../assets/decoys.js")),
    script("dom.js", include_bytes!("../assets/dom.js")),
    script("fences.js", include_bytes!("../assets/fences.js")),
    script("logs.js", include_bytes!("../assets/logs.js")),
    script(
        "notifications.js",
        include_bytes!("../assets/notifications.js"),
    ),
    script("rotate.js", include_bytes!("../assets/rotate.js")),
    script("router.js", include_bytes!("../assets/router.js")),
    script("state.js", include_bytes!("../assets/state.js")),
    script("tokens.js", include_bytes!("../assets/tokens.js")),
    script("insights.js", include_bytes!("../assets/insights.js")),
    script("policy.js", include_bytes!("../assets/policy.js")),
    script(
        "workspace_tokens.js",
        include_bytes!("../assets/workspace_tokens.js"),
    ),
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/favicon.svg"),
    },
];

/// An ES module; `app.js` is the entry the page loads, the rest it imports.
const fn script(name: &'static str, body: &'static [u8]) -> Asset {
    Asset {
        name,
        content_type: "text/javascript; charset=utf-8",
        body,
    }
}

const INDEX_TEMPLATE: &str = include_str!("../assets/index.html");

/// FNV-1a over every asset and the page, folded at compile time.
const fn build_hash() -> u64 {
    const fn fold(mut hash: u64, bytes: &[u8]) -> u64 {
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        hash
    }
    let mut hash = fold(0xcbf2_9ce4_8422_2325, INDEX_TEMPLATE.as_bytes());
    let mut i = 0;
    while i < ASSETS.len() {
        hash = fold(hash, ASSETS[i].name.as_bytes());
        hash = fold(hash, ASSETS[i].body);
        i += 1;
    }
    hash
}

const BUILD_HASH: u64 = build_hash();

static VERSION: LazyLock<String> = LazyLock::new(|| format!("{BUILD_HASH:016x}"));
static ETAG: LazyLock<String> = LazyLock::new(|| format!("\"{}\"", *VERSION));
static INDEX: LazyLock<String> =
    LazyLock::new(|| INDEX_TEMPLATE.replace("{{assets}}", &format!("/assets/{}", *VERSION)));

/// The UI's routes; merged into the token service's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(get_page))
        .route("/settings", get(get_page))
        .route("/settings/{*rest}", get(get_page))
        .route("/assets/{version}/{file}", get(get_asset))
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

/// `304` when the browser already holds this build's bytes.
fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn respond(
    request: &HeaderMap,
    content_type: &'static str,
    cache_control: &'static str,
    body: &'static [u8],
) -> Response {
    let etag = ETAG.as_str();
    let mut response = if not_modified(request, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = body.into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    security_headers(headers);
    response
}

/// `GET /`, `/settings`, `/settings/…`: the single page; it routes itself.
pub async fn get_page(request: HeaderMap) -> Response {
    respond(
        &request,
        "text/html; charset=utf-8",
        "no-cache",
        INDEX.as_bytes(),
    )
}

/// `GET /assets/{version}/{file}`: immutable for this build's version; an
/// older version's URL still gets today's file, revalidated every time.
pub async fn get_asset(
    request: HeaderMap,
    Path((version, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == file)
        .ok_or_else(|| ApiError::not_found("not_found", "no such asset"))?;
    let cache_control = if version == *VERSION {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok(respond(
        &request,
        asset.content_type,
        cache_control,
        asset.body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_points_at_this_builds_assets() {
        assert!(!INDEX.contains("{{assets}}"));
        for asset in ["app.css", "app.js", "favicon.svg"] {
            assert!(
                INDEX.contains(&format!("/assets/{}/{asset}", *VERSION)),
                "{asset}"
            );
        }
    }

    #[test]
    fn every_module_import_is_an_asset() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).expect("scripts are UTF-8");
            for import in text.split(" from './").skip(1) {
                let target = import.split('\'').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|a| a.name == target),
                    "{} imports {target}, which is not served",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn page_has_no_inline_script_or_style() {
        assert!(!INDEX.contains("<style"));
        assert!(!INDEX.contains("style="));
        assert!(!INDEX.contains(" on"), "no inline event handlers");
        for script in INDEX.split("<script").skip(1) {
            assert!(script.trim_start().starts_with("type=\"module\" src="));
        }
    }
}
