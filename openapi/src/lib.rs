//! Builds the Federation Gateway's OpenAPI 3.1 document from the api crate (no database, no
//! server), and keeps the checked-in `openapi/openapi.json` in step with it.

use std::path::PathBuf;

/// Where the checked-in document lives.
pub fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

/// The document as served at `/openapi.json`, pretty-printed with a final newline.
pub fn render() -> anyhow::Result<String> {
    let document = gateway_api::openapi::document();
    Ok(format!("{}\n", document.to_pretty_json()?))
}
