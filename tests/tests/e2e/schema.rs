//! The OpenAPI document and the server agree on what a request may hold: every string a
//! request carries declares its rules, and at each declared bound the served schema and the
//! live server give the same answer (accepted, or 422 naming the field).

use serde_json::{json, Value};

use crate::e2e_tests;
use crate::support::{registration, TestApp};

/// Follows `$ref`s (and a lone `allOf` wrapper) to the schema they name.
fn resolve<'a>(document: &'a Value, mut schema: &'a Value) -> &'a Value {
    loop {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            schema = document
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("unresolved {reference}"));
        } else if let Some([only]) = schema
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            schema = only;
        } else {
            return schema;
        }
    }
}

fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Every string (and array) in a request schema that states nothing a client could check.
fn unconstrained(document: &Value, schema: &Value, at: &str, depth: usize, out: &mut Vec<String>) {
    assert!(depth < 12, "{at}: schema too deep (a cycle?)");
    let schema = resolve(document, schema);
    for key in ["oneOf", "anyOf", "allOf"] {
        for member in schema[key].as_array().into_iter().flatten() {
            unconstrained(document, member, at, depth + 1, out);
        }
    }
    if schema.get("enum").is_some() || schema.get("const").is_some() {
        return;
    }
    let types = types(schema);
    if types.contains(&"string") {
        let typed_format = schema["format"]
            .as_str()
            .is_some_and(|f| ["date", "date-time", "uuid", "binary"].contains(&f));
        let bounded = schema.get("maxLength").is_some() && schema.get("minLength").is_some();
        if !typed_format && !bounded && schema.get("pattern").is_none() {
            out.push(format!(
                "{at}: string without length bounds, pattern, enum or typed format"
            ));
        }
    }
    if types.contains(&"array") {
        match schema.get("items") {
            Some(items) => unconstrained(document, items, &format!("{at}[]"), depth + 1, out),
            None => out.push(format!("{at}: array without items")),
        }
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        unconstrained(document, property, &format!("{at}.{name}"), depth + 1, out);
    }
}

#[test]
fn every_request_string_declares_its_rules() {
    let document = serde_json::to_value(gateway_api::openapi::document()).unwrap();
    let mut found = Vec::new();
    let mut bodies = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (media, content) in operation["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
            {
                bodies += 1;
                let at = format!("{method} {path} ({media})");
                unconstrained(&document, &content["schema"], &at, 0, &mut found);
            }
        }
    }
    assert!(bodies >= 12, "request bodies found: {bodies}");
    assert!(
        found.is_empty(),
        "request schemas that state no rule:\n{}",
        found.join("\n")
    );
}

/// Whether the served schema `name` (a component) accepts `value`: its length bounds (in
/// characters, as JSON Schema counts) and its pattern (ECMA-262, as JSON Schema reads it).
fn schema_accepts(document: &Value, name: &str, value: &str) -> bool {
    let schema = &document["components"]["schemas"][name];
    assert!(schema.is_object(), "no component {name}");
    let chars = value.chars().count() as u64;
    let min = schema["minLength"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: no minLength"));
    let max = schema["maxLength"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: no maxLength"));
    let pattern = schema["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no pattern"));
    let regex = regress::Regex::new(pattern).unwrap_or_else(|e| panic!("{name}: {e}"));
    (min..=max).contains(&chars) && regex.find(value).is_some()
}

fn bound(document: &Value, name: &str, key: &str) -> usize {
    document["components"]["schemas"][name][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: no {key}")) as usize
}

/// A DNS name of exactly `len` (at least 3) characters: `a.` and labels of at most 63.
fn dns_name_of(len: usize) -> String {
    let mut labels = vec!["a".to_owned()];
    let mut left = len - 2;
    while left > 63 {
        // Never leave nothing for the last label.
        let take = if left == 64 { 62 } else { 63 };
        labels.push("a".repeat(take));
        left -= take + 1;
    }
    labels.push("a".repeat(left));
    let name = labels.join(".");
    assert_eq!(name.len(), len, "a DNS name of {len} characters");
    name
}

/// Values to try for each value schema: the declared bounds read from the document and
/// one either side, and the shapes the domain's rules name.
fn probes(document: &Value) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let at_bounds = |name: &'static str, unit: &str, out: &mut Vec<(&'static str, String)>| {
        let (min, max) = (
            bound(document, name, "minLength"),
            bound(document, name, "maxLength"),
        );
        for n in [min.saturating_sub(1), min, max, max + 1] {
            out.push((name, unit.repeat(n)));
        }
    };
    at_bounds("OdsCode", "7", &mut out);
    for code in [
        "RR8",
        "rr8",
        "A81001",
        "RX1AB0001",
        "A-1",
        "RR 8",
        "ÄB1",
        "R8",
    ] {
        out.push(("OdsCode", code.to_owned()));
    }
    for name in ["OrganisationName", "PersonName", "BusinessNeed"] {
        at_bounds(name, "é", &mut out);
        let min = bound(document, name, "minLength").max(2);
        let inner = "n".repeat(min.saturating_sub(2));
        for shape in [
            format!("A{inner}\u{0}B"),
            format!("A{inner}\tB"),
            format!("A{inner}\nB"),
            format!("A{inner} B"),
            format!("A{inner}\u{a0}B"),
            format!("A{inner}\u{85}B"),
            format!("A{inner}\u{200b}B"),
            format!("A{inner}\u{2028}B"),
        ] {
            out.push((name, shape));
        }
    }
    let (min, max) = (
        bound(document, "DnsName", "minLength"),
        bound(document, "DnsName", "maxLength"),
    );
    for n in [min, max, max + 1] {
        out.push(("DnsName", dns_name_of(n)));
    }
    for name in [
        "care.example.org",
        "Mail.Care.EXAMPLE.org",
        "xn--bcher-kva.example",
        "a-b.example.org",
        "1.example.org",
        "example.org1",
        "localhost",
        "example.123",
        "-a.example.org",
        "a-.example.org",
        "a..example.org",
        "exa mple.org",
        "exa_mple.org",
        "ünicode.example.org",
        &format!("{}.example.org", "a".repeat(63)),
        &format!("{}.example.org", "a".repeat(64)),
    ] {
        out.push(("DnsName", name.to_owned()));
    }
    let max = bound(document, "EmailAddress", "maxLength");
    for n in [max, max + 1] {
        // A 64-character local part (the most the gateway takes) and a domain filling the rest.
        out.push((
            "EmailAddress",
            format!("{}@{}", "a".repeat(64), dns_name_of(n - 65)),
        ));
    }
    for address in [
        "ada@care.example.org",
        "Ada.Lovelace+ig@Care.Example.ORG",
        "o'brien@care.example.org",
        "a!#$%&'*+-/=?^_`{|}~@care.example.org",
        "000",
        "nope",
        "@care.example.org",
        "ada@",
        "ada@localhost",
        "ada lovelace@care.example.org",
        ".ada@care.example.org",
        "ada.@care.example.org",
        "a..da@care.example.org",
        "ada@care..example.org",
        "\"ada\"@care.example.org",
        "ada@[127.0.0.1]",
    ] {
        out.push(("EmailAddress", address.to_owned()));
    }
    out
}

/// Where each value schema sits in a registration, and the field the server names.
fn place(schema: &str, body: &mut Value, value: &str) -> &'static str {
    match schema {
        "OdsCode" => {
            body["ods_code"] = json!(value);
            "ods_code"
        }
        "OrganisationName" => {
            body["name"] = json!(value);
            "name"
        }
        "PersonName" => {
            body["contacts"]["ig_lead"]["name"] = json!(value);
            "contacts.ig_lead.name"
        }
        "EmailAddress" => {
            body["contacts"]["technical"]["email"] = json!(value);
            "contacts.technical.email"
        }
        "BusinessNeed" => {
            body["business_need"] = json!(value);
            "business_need"
        }
        "DnsName" => {
            body["domains"] = json!([value]);
            "domains[0]"
        }
        other => panic!("no place for {other}"),
    }
}

e2e_tests! {
    async fn registration_schema_and_server_agree_at_every_bound(backend) {
        let app = TestApp::spawn(backend).await;
        let document: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
        // The registration's fields name the value schemas probed below.
        let request = &document["components"]["schemas"]["RegistrationRequest"]["properties"];
        for (property, schema) in [("ods_code", "OdsCode"), ("name", "OrganisationName"), ("business_need", "BusinessNeed")] {
            assert_eq!(resolve(&document, &request[property]), &document["components"]["schemas"][schema], "{property}");
        }
        assert_eq!(request["domains"]["items"]["$ref"], "#/components/schemas/DnsName");
        assert_eq!(request["domains"]["uniqueItems"], true);

        let mut disagreements = Vec::new();
        let probes = probes(&document);
        for (schema, value) in &probes {
            let mut body = registration(1);
            let field = place(schema, &mut body, value);
            let response = app.register(&body).await;
            let status = response.status().as_u16();
            let problem: Value = response.json().await.unwrap();
            let server = match status {
                201 => true,
                422 => {
                    let named = problem["errors"].as_array().unwrap().iter().any(|e| e["field"] == field);
                    assert!(named, "{schema} {value:?}: 422 must name {field}: {problem}");
                    false
                }
                other => panic!("{schema} {value:?}: unexpected {other}: {problem}"),
            };
            let declared = schema_accepts(&document, schema, value);
            if declared != server {
                disagreements.push(format!("{schema} {value:?} ({} chars): schema {}, server {}", value.chars().count(), if declared { "accepts" } else { "refuses" }, if server { "accepts" } else { "refuses" }));
            }
        }
        assert!(probes.len() > 60);
        assert!(disagreements.is_empty(), "schema and server disagree:\n{}", disagreements.join("\n"));

        // The documented leniency beyond the schema: surrounding whitespace is trimmed and a DNS
        // name may end with a dot. The schema states the canonical form, so it refuses these.
        for (schema, value) in [("OdsCode", " rr8 "), ("OrganisationName", " Leeds Care\t"), ("DnsName", "care.example.org."), ("EmailAddress", " ada@care.example.org ")] {
            let mut body = registration(1);
            place(schema, &mut body, value);
            assert_eq!(app.register(&body).await.status(), 201, "{schema} {value:?}");
            assert!(!schema_accepts(&document, schema, value), "{schema} {value:?}");
        }
        // What a pattern could state only with lookaheads (which test generators turn into
        // rejection sampling): a top-level label that starts with a digit but is not all digits
        // (the schema refuses it, the server takes it: no real TLD looks like that), and an
        // email address's local part of more than 64 characters (the schema bounds only the
        // whole address; the server refuses it, naming the field).
        let mut body = registration(1);
        place("DnsName", &mut body, "care.example.1a");
        assert_eq!(app.register(&body).await.status(), 201);
        assert!(!schema_accepts(&document, "DnsName", "care.example.1a"));
        let long_local = format!("{}@care.example.org", "a".repeat(65));
        let mut body = registration(1);
        let field = place("EmailAddress", &mut body, &long_local);
        assert!(schema_accepts(&document, "EmailAddress", &long_local));
        let refused: Value = { let r = app.register(&body).await; assert_eq!(r.status(), 422); r.json().await.unwrap() };
        assert_eq!(refused["errors"][0]["field"], field);
        assert_eq!(refused["errors"][0]["rule"], "email");
    }
}

/// The bounds the value schemas state are the domain's own constants.
#[test]
fn value_schemas_state_the_domain_bounds() {
    use gateway_domain::text::{BusinessNeed, OrganisationName, PersonName, Reason, ShortText};
    use gateway_domain::{EmailAddress, EmailDomain, OdsCode};
    let document = serde_json::to_value(gateway_api::openapi::document()).unwrap();
    let bounds = |name: &str| {
        (
            bound(&document, name, "minLength"),
            bound(&document, name, "maxLength"),
        )
    };
    assert_eq!(bounds("OdsCode"), (OdsCode::MIN_LEN, OdsCode::MAX_LEN));
    assert_eq!(
        bounds("OrganisationName"),
        (OrganisationName::MIN_CHARS, OrganisationName::MAX_CHARS)
    );
    assert_eq!(
        bounds("PersonName"),
        (PersonName::MIN_CHARS, PersonName::MAX_CHARS)
    );
    assert_eq!(
        bounds("ShortText"),
        (ShortText::MIN_CHARS, ShortText::MAX_CHARS)
    );
    assert_eq!(bounds("Reason"), (Reason::MIN_CHARS, Reason::MAX_CHARS));
    assert_eq!(
        bounds("BusinessNeed"),
        (BusinessNeed::MIN_CHARS, BusinessNeed::MAX_CHARS)
    );
    assert_eq!(bounds("EmailAddress").1, EmailAddress::MAX_LEN);
    assert_eq!(bounds("DnsName").1, EmailDomain::MAX_LEN);
    let domains =
        &document["components"]["schemas"]["RegistrationRequest"]["properties"]["domains"];
    assert_eq!(
        domains["maxItems"].as_u64(),
        Some(gateway_domain::organisation::MAX_DOMAINS as u64)
    );
    let scopes: Vec<&str> = gateway_domain::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let pattern = document["components"]["schemas"]["ScopeList"]["pattern"]
        .as_str()
        .unwrap();
    let regex = regress::Regex::new(pattern).unwrap();
    for accepted in [
        "",
        " ",
        &scopes.join(" "),
        &format!(" {}  {} ", scopes[0], scopes[0]),
    ] {
        assert!(regex.find(accepted).is_some(), "{accepted:?}");
    }
    for refused in [
        "admin",
        &scopes.concat(),
        &format!("{},{}", scopes[0], scopes[1]),
    ] {
        assert!(regex.find(refused).is_none(), "{refused:?}");
    }
}

e2e_tests! {
    async fn an_address_book_scope_without_extra_attributes_reads_back(backend) {
        // Schema-valid (and valid): only `id` and `email`. It was stored, then refused on read.
        let app = TestApp::spawn(backend).await;
        let registered: Value = app.register(&registration(1)).await.json().await.unwrap();
        let (id, token) = (registered["id"].as_str().unwrap(), registered["registration_access_token"].as_str().unwrap());
        let draft = json!({
            "template_version": "2026-11",
            "scopes": {"address_book": {"attributes": []}},
            "term": {"starts_on": "2026-12-01", "ends_on": "2027-11-30"},
            "signatory": {"name": "Ada Lovelace", "role": "Caldicott Guardian", "email": "ada@care1.example.org"}
        });
        let created = app.client.post(app.url(&format!("/v1/organisations/{id}/agreements"))).bearer_auth(token).json(&draft).send().await.unwrap();
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        let aid = created["id"].as_str().unwrap();
        let read = app.client.get(app.url(&format!("/v1/organisations/{id}/agreements/{aid}"))).bearer_auth(token).send().await.unwrap();
        assert_eq!(read.status(), 200);
        let read: Value = read.json().await.unwrap();
        assert_eq!(read["scopes"]["address_book"]["attributes"], json!([]));
    }
}
