//! Builds the Federation Gateway's OpenAPI 3.1 document from the api crate (no database, no
//! server), and keeps the checked-in `openapi/openapi.json` in step with it.

use std::path::PathBuf;

pub mod downgrade;

/// Where the checked-in document lives.
pub fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

/// Where the checked-in OpenAPI 3.0 view lives (input of the generated client).
pub fn checked_in_30_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi-3.0.json")
}

/// The document as served at `/openapi.json`, pretty-printed with a final newline.
pub fn render() -> anyhow::Result<String> {
    let document = gateway_api::openapi::document();
    Ok(format!("{}\n", document.to_pretty_json()?))
}

/// The OpenAPI 3.0 view of the same document (see [`downgrade`]).
pub fn render_30() -> anyhow::Result<String> {
    let document: serde_json::Value = serde_json::from_str(&render()?)?;
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(&downgrade::to_openapi_30(&document))?
    ))
}
