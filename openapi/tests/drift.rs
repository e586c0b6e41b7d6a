//! The checked-in document must equal what the code generates. `UPDATE_OPENAPI=1` rewrites it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

fn check_or_update(path: &std::path::Path, generated: &str) {
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with the code. Review the API change, then run:\n    UPDATE_OPENAPI=1 cargo test -p gateway-openapi --test drift",
        path.display()
    );
}

#[test]
fn checked_in_document_matches_the_code() {
    check_or_update(
        &gateway_openapi::checked_in_path(),
        &gateway_openapi::render().unwrap(),
    );
}

#[test]
fn checked_in_30_view_matches_the_code() {
    check_or_update(
        &gateway_openapi::checked_in_30_path(),
        &gateway_openapi::render_30().unwrap(),
    );
}

/// Every (path, method, operationId) and every schema with its properties, required list and
/// enum values: the same in both views.
#[test]
fn both_views_describe_the_same_operations_and_schemas() {
    let v31: Value = serde_json::from_str(&gateway_openapi::render().unwrap()).unwrap();
    let v30: Value = serde_json::from_str(&gateway_openapi::render_30().unwrap()).unwrap();
    assert_eq!(v30["openapi"], "3.0.3");
    let operations = |doc: &Value| -> Vec<(String, String, Value, Vec<String>)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let mut statuses: Vec<String> = op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                statuses.sort();
                out.push((
                    path.clone(),
                    method.clone(),
                    op["operationId"].clone(),
                    statuses,
                ));
            }
        }
        out
    };
    assert_eq!(operations(&v31), operations(&v30));
    let schemas = |doc: &Value| -> Vec<(String, Vec<String>, Value, Value)> {
        doc["components"]["schemas"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, schema)| {
                let mut properties: Vec<String> = schema["properties"]
                    .as_object()
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                properties.sort();
                (
                    name.clone(),
                    properties,
                    schema["required"].clone(),
                    schema["enum"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(schemas(&v31), schemas(&v30));
    let text30 = v30.to_string();
    assert!(
        !text30.contains("\"null\""),
        "no 3.1 null types left in the 3.0 view"
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
                // The token endpoint answers every error in RFC 6749 form.
                if operation["operationId"] == "issue_token"
                    && (status.starts_with('4') || status.starts_with('5'))
                {
                    let content = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        content, "#/components/schemas/OAuthErrorResponse",
                        "{name} {status}: OAuth error schema"
                    );
                    continue;
                }
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

/// Every `$ref` in the document points at a component that exists.
#[test]
fn every_reference_resolves() {
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let document: Value = serde_json::from_str(&gateway_openapi::render().unwrap()).unwrap();
    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(!found.is_empty());
    for reference in found {
        let pointer = reference.strip_prefix('#').unwrap();
        assert!(
            document.pointer(pointer).is_some(),
            "unresolved reference {reference}"
        );
    }
}
