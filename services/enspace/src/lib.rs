//! The processes the `enspace` binary runs, composed from the service
//! crates. A library so that tests can run them in-process.

pub mod cli;
pub mod embedded;
pub mod run;

/// The OpenAPI document of the whole product: the token service's routes and
/// an API node's, as `enspace serve` serves them (`schemas/openapi.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    enspace_tokens::openapi::document([
        enspace_tokens::api_router().into_openapi(),
        enspace_api_node::api_router().into_openapi(),
    ])
}
