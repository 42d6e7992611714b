//! The OpenAPI document, generated from the handlers' annotations and the wire types, served at
//! `/v1/openapi.json` and kept in `docs/openapi.json` (a test checks they agree).

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Dari, self-hosted", description = "The control plane's public API, compatible with Dari's /v1."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        routes::organizations::list, routes::organizations::create,
        routes::api_keys::list, routes::api_keys::create, routes::api_keys::revoke,
        routes::credentials::list, routes::credentials::put, routes::credentials::delete,
        routes::source_snapshots::reserve, routes::source_snapshots::upload, routes::source_snapshots::finalize,
        routes::source_snapshots::manifest, routes::source_snapshots::get, routes::source_snapshots::delete,
        routes::agents::create, routes::agents::publish_version, routes::agents::list, routes::agents::get, routes::agents::delete,
        routes::versions::list, routes::versions::get, routes::versions::bundle, routes::versions::file,
        routes::versions::runtime,
        routes::sessions::create, routes::sessions::get, routes::sessions::list_for_agent, routes::sessions::list,
        routes::events::send, routes::events::list, routes::stream::stream,
        routes::messages::send_to_agent, routes::messages::list, routes::messages::get,
        routes::transcript::get,
        routes::files::upload, routes::files::get, routes::files::content, routes::files::delete,
        routes::workspaces::download_zip,
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("dari_…").build()),
        );
    }
}

/// The document as pretty JSON, as `docs/openapi.json` holds it.
pub fn openapi_json() -> String {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document.to_pretty_json().expect("the OpenAPI document serializes")
}

pub(super) async fn serve() -> Json<serde_json::Value> {
    Json(serde_json::from_str(&openapi_json()).expect("the OpenAPI document is JSON"))
}

#[cfg(test)]
mod tests;
