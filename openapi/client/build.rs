//! Generates the client from the checked-in OpenAPI 3.0 view at build time, so the client can
//! never fall behind the server's document.

use std::path::Path;

fn main() {
    let spec_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi-3.0.json");
    println!("cargo:rerun-if-changed={}", spec_path.display());
    let text = std::fs::read_to_string(&spec_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", spec_path.display()));
    let mut document: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", spec_path.display()));
    json_suffix_as_json(&mut document);
    leave_out_multipart_uploads(&mut document);
    let spec: openapiv3::OpenAPI = serde_json::from_value(document).unwrap_or_else(|e| {
        panic!(
            "{} is not an OpenAPI 3.0 document: {e}",
            spec_path.display()
        )
    });
    let mut settings = progenitor::GenerationSettings::default();
    settings
        .with_interface(progenitor::InterfaceStyle::Builder)
        .with_derive("PartialEq");
    let mut generator = progenitor::Generator::new(&settings);
    let tokens = generator
        .generate_tokens(&spec)
        .unwrap_or_else(|e| panic!("progenitor could not generate the client: {e}"));
    let ast = syn::parse2(tokens).unwrap_or_else(|e| panic!("generated code does not parse: {e}"));
    let code = prettyplease::unparse(&ast);
    let out = Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|e| panic!("OUT_DIR: {e}")))
        .join("client.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// progenitor types only `application/json` bodies: it refuses other request media types and
/// leaves other responses untyped. Our `+json` media types (`application/problem+json`
/// errors, `application/merge-patch+json` patches) are JSON by definition (RFC 6839), and the
/// server accepts `application/json` for patches too, so for generation only they are read as
/// `application/json`. The checked-in documents stay exact.
fn json_suffix_as_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(content)) = map.get_mut("content") {
                let suffixed: Vec<String> = content
                    .keys()
                    .filter(|k| k.starts_with("application/") && k.ends_with("+json"))
                    .cloned()
                    .collect();
                for key in suffixed {
                    if let Some(media) = content.remove(&key) {
                        content.entry("application/json").or_insert(media);
                    }
                }
            }
            map.values_mut().for_each(json_suffix_as_json);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(json_suffix_as_json),
        _ => {}
    }
}

/// progenitor cannot express `multipart/form-data` request bodies (evidence uploads with a
/// document). Those operations are left out of the generated client; the README shows them
/// as raw HTTP. Everything else in the document is generated.
fn leave_out_multipart_uploads(document: &mut serde_json::Value) {
    let Some(paths) = document
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        item.retain(|_, operation| {
            operation
                .pointer("/requestBody/content/multipart~1form-data")
                .is_none()
        });
    }
}
