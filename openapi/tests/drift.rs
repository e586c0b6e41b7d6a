//! The checked-in document must equal what the code generates. `UPDATE_OPENAPI=1` rewrites it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

#[test]
fn checked_in_document_matches_the_code() {
    let generated = gateway_openapi::render().unwrap();
    let path = gateway_openapi::checked_in_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with the code. Review the API change, then run:\n    UPDATE_OPENAPI=1 cargo test -p gateway-openapi --test drift",
        path.display()
    );
}

/// House rules for every operation: an id, a summary, a tag, a security requirement, and
/// problem responses for its errors.
#[test]
fn every_operation_is_fully_documented() {
    let document: Value = serde_json::from_str(&gateway_openapi::render().unwrap()).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/registrations"));
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let name = format!("{method} {path}");
            operations += 1;
            assert!(operation["operationId"].is_string(), "{name}: operationId");
            assert!(operation["summary"].is_string(), "{name}: summary");
            assert!(
                operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{name}: tag"
            );
            assert!(operation["security"].is_array(), "{name}: security");
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let content =
                        &response["content"]["application/problem+json"]["schema"]["$ref"];
                    assert_eq!(
                        content, "#/components/schemas/Problem",
                        "{name} {status}: problem schema"
                    );
                }
            }
            if let Some(body) = operation.get("requestBody") {
                let examples = body["content"].as_object().unwrap().values().any(|c| {
                    c.get("example").is_some()
                        || c["schema"]["$ref"].as_str().is_some_and(|r| {
                            let schema = r.rsplit('/').next().unwrap();
                            document["components"]["schemas"][schema]
                                .get("example")
                                .is_some()
                        })
                });
                assert!(examples, "{name}: request body example");
            }
        }
    }
    assert!(operations >= 6);
}
