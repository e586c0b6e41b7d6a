//! A faithful OpenAPI 3.0 view of the 3.1 document, for tools that read only 3.0 (progenitor).
//!
//! utoipa emits OpenAPI 3.1, whose schemas are JSON Schema 2020-12. The rewrites, each
//! meaning-preserving:
//!
//! | 3.1 | 3.0 |
//! |---|---|
//! | `"openapi": "3.1.x"` | `"openapi": "3.0.3"` |
//! | `"type": ["T", "null"]` | `"type": "T", "nullable": true` |
//! | `oneOf`/`anyOf` with a `{"type": "null"}` member | the other member(s), `"nullable": true` (a lone `$ref` is wrapped in `allOf`) |
//! | `$ref` with sibling keywords | `allOf: [{$ref}]` plus the siblings (3.0 ignores a `$ref`'s siblings) |
//! | `examples: [a, ...]` in a schema | `example: a` |
//! | `const: c` | `enum: [c]` |
//! | numeric `exclusiveMinimum`/`exclusiveMaximum` | `minimum`/`maximum` with the boolean form |
//! | `contentEncoding: base64` / `contentMediaType` | `format: byte` / `format: binary` |
//! | `info.license.identifier`, `info.summary`, `webhooks`, `jsonSchemaDialect`, `components.pathItems` | dropped (no 3.0 equivalent; documentation only) |

use serde_json::{json, Map, Value};

/// The 3.0 view of a 3.1 document.
pub fn to_openapi_30(document: &Value) -> Value {
    let mut doc = document.clone();
    if let Some(root) = doc.as_object_mut() {
        root.insert("openapi".into(), json!("3.0.3"));
        root.remove("webhooks");
        root.remove("jsonSchemaDialect");
        if let Some(info) = root.get_mut("info").and_then(Value::as_object_mut) {
            info.remove("summary");
            if let Some(license) = info.get_mut("license").and_then(Value::as_object_mut) {
                license.remove("identifier");
            }
        }
        if let Some(components) = root.get_mut("components").and_then(Value::as_object_mut) {
            components.remove("pathItems");
        }
    }
    walk(&mut doc);
    doc
}

/// Finds every schema in the document (values of `schema` keys and of `components.schemas`).
fn walk(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match key.as_str() {
                    "schema" => schema(child),
                    "schemas" => {
                        if let Some(schemas) = child.as_object_mut() {
                            schemas.values_mut().for_each(schema);
                        }
                    }
                    _ => walk(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(walk),
        _ => {}
    }
}

fn is_null_schema(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("null")
        && value.as_object().is_some_and(|m| m.len() == 1)
}

/// Rewrites one schema object and everything nested in it.
fn schema(value: &mut Value) {
    let Some(map) = value.as_object_mut() else {
        return;
    };

    // type: [T, "null"]
    if let Some(Value::Array(types)) = map.get("type").cloned() {
        let nullable = types.iter().any(|t| t == "null");
        let rest: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
        match rest.len() {
            0 => {
                map.remove("type");
            }
            1 => {
                map.insert("type".into(), rest[0].clone());
            }
            _ => {
                map.remove("type");
                map.insert(
                    "anyOf".into(),
                    Value::Array(rest.into_iter().map(|t| json!({ "type": t })).collect()),
                );
            }
        }
        if nullable {
            map.insert("nullable".into(), json!(true));
        }
    }

    // oneOf/anyOf with a null member
    for keyword in ["oneOf", "anyOf"] {
        let Some(Value::Array(members)) = map.get(keyword).cloned() else {
            continue;
        };
        if !members.iter().any(is_null_schema) {
            continue;
        }
        let rest: Vec<Value> = members.into_iter().filter(|m| !is_null_schema(m)).collect();
        map.remove(keyword);
        map.insert("nullable".into(), json!(true));
        if rest.len() == 1 {
            let only = rest.into_iter().next().unwrap_or_default();
            if only.get("$ref").is_some() {
                map.insert("allOf".into(), json!([only]));
            } else if let Value::Object(inner) = only {
                for (k, v) in inner {
                    map.entry(k).or_insert(v);
                }
            }
        } else {
            map.insert(keyword.into(), Value::Array(rest));
        }
    }

    // $ref with siblings
    if map.contains_key("$ref") && map.len() > 1 {
        let reference = map.remove("$ref").unwrap_or_default();
        let mut all_of = vec![json!({ "$ref": reference })];
        if let Some(Value::Array(existing)) = map.remove("allOf") {
            all_of.extend(existing);
        }
        map.insert("allOf".into(), Value::Array(all_of));
    }

    if let Some(Value::Array(examples)) = map.remove("examples") {
        if let Some(first) = examples.into_iter().next() {
            map.entry("example").or_insert(first);
        }
    }
    if let Some(constant) = map.remove("const") {
        map.insert("enum".into(), json!([constant]));
    }
    for (exclusive, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(limit) = map.get(exclusive).filter(|v| v.is_number()).cloned() {
            map.insert(bound.into(), limit);
            map.insert(exclusive.into(), json!(true));
        }
    }
    if let Some(encoding) = map.remove("contentEncoding") {
        map.insert(
            "format".into(),
            json!(if encoding == "base64" {
                "byte"
            } else {
                "binary"
            }),
        );
    }
    if map.remove("contentMediaType").is_some() {
        map.entry("format").or_insert(json!("binary"));
    }

    nested(map);
}

fn nested(map: &mut Map<String, Value>) {
    if let Some(properties) = map.get_mut("properties").and_then(Value::as_object_mut) {
        properties.values_mut().for_each(schema);
    }
    for keyword in ["items", "not"] {
        if let Some(child) = map.get_mut(keyword) {
            schema(child);
        }
    }
    if let Some(additional) = map
        .get_mut("additionalProperties")
        .filter(|v| v.is_object())
    {
        schema(additional);
    }
    for keyword in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(members)) = map.get_mut(keyword) {
            members.iter_mut().for_each(schema);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(schema_31: Value) -> Value {
        let doc = json!({"openapi": "3.1.0", "components": {"schemas": {"S": schema_31}}});
        to_openapi_30(&doc)["components"]["schemas"]["S"].clone()
    }

    #[test]
    fn version_and_31_only_fields() {
        let doc = json!({"openapi": "3.1.0", "info": {"title": "t", "version": "1", "summary": "s", "license": {"name": "MIT", "identifier": "MIT"}}, "webhooks": {}, "paths": {}});
        let out = to_openapi_30(&doc);
        assert_eq!(out["openapi"], "3.0.3");
        assert_eq!(out["info"]["license"], json!({"name": "MIT"}));
        assert!(out.get("webhooks").is_none());
        assert!(out["info"].get("summary").is_none());
    }

    #[test]
    fn nullable_type_arrays() {
        assert_eq!(
            view(json!({"type": ["string", "null"]})),
            json!({"type": "string", "nullable": true})
        );
        assert_eq!(
            view(json!({"type": ["array", "null"], "items": {"type": ["integer", "null"]}})),
            json!({"type": "array", "nullable": true, "items": {"type": "integer", "nullable": true}})
        );
        assert_eq!(
            view(json!({"type": ["string", "integer"]})),
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
    }

    #[test]
    fn nullable_references() {
        assert_eq!(
            view(
                json!({"oneOf": [{"$ref": "#/components/schemas/T"}, {"type": "null"}], "description": "d"})
            ),
            json!({"allOf": [{"$ref": "#/components/schemas/T"}], "nullable": true, "description": "d"})
        );
        assert_eq!(
            view(
                json!({"anyOf": [{"type": "null"}, {"type": "object", "properties": {"a": {"type": ["string", "null"]}}}]})
            ),
            json!({"type": "object", "nullable": true, "properties": {"a": {"type": "string", "nullable": true}}})
        );
        assert_eq!(
            view(json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]})),
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}], "nullable": true})
        );
    }

    #[test]
    fn ref_siblings_move_into_all_of() {
        assert_eq!(
            view(json!({"$ref": "#/components/schemas/T", "description": "why"})),
            json!({"allOf": [{"$ref": "#/components/schemas/T"}], "description": "why"})
        );
        assert_eq!(
            view(json!({"$ref": "#/components/schemas/T"})),
            json!({"$ref": "#/components/schemas/T"})
        );
    }

    #[test]
    fn keyword_rewrites() {
        assert_eq!(
            view(json!({"type": "string", "examples": ["a", "b"]})),
            json!({"type": "string", "example": "a"})
        );
        assert_eq!(view(json!({"const": "x"})), json!({"enum": ["x"]}));
        assert_eq!(
            view(json!({"type": "integer", "exclusiveMinimum": 0})),
            json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true})
        );
        assert_eq!(
            view(json!({"type": "string", "contentEncoding": "base64"})),
            json!({"type": "string", "format": "byte"})
        );
        assert_eq!(
            view(json!({"type": "string", "contentMediaType": "application/pdf"})),
            json!({"type": "string", "format": "binary"})
        );
    }

    #[test]
    fn schemas_in_operations_are_rewritten_but_media_type_examples_are_not() {
        let doc = json!({"openapi": "3.1.0", "paths": {"/x": {"get": {
            "parameters": [{"name": "q", "in": "query", "schema": {"type": ["string", "null"]}}],
            "responses": {"200": {"description": "ok", "content": {"application/json": {
                "schema": {"type": ["object", "null"]},
                "examples": {"one": {"value": {"a": 1}}}
            }}}}
        }}}});
        let out = to_openapi_30(&doc);
        let op = &out["paths"]["/x"]["get"];
        assert_eq!(
            op["parameters"][0]["schema"],
            json!({"type": "string", "nullable": true})
        );
        let content = &op["responses"]["200"]["content"]["application/json"];
        assert_eq!(
            content["schema"],
            json!({"type": "object", "nullable": true})
        );
        assert_eq!(content["examples"], json!({"one": {"value": {"a": 1}}}));
    }
}
