//! The OpenAPI document and the template describe the same API: every route that
//! `template.yaml` gives API Gateway is documented, and every documented path is routed.

use std::collections::BTreeSet;

use local_gateway::model::Model;
use local_gateway::provision::{offline, workspace_template_path};
use local_gateway::template::Template;

fn template_routes() -> BTreeSet<String> {
    let template = Template::load(workspace_template_path()).unwrap();
    let names = offline(&template, "docs-test-", "us-east-1").unwrap();
    Model::build(&template, &names)
        .unwrap()
        .http_routes
        .iter()
        .map(|route| route.route_key())
        .collect()
}

fn documented_routes() -> BTreeSet<String> {
    let document = docs::openapi().unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes
}

#[test]
fn every_template_route_is_documented_and_every_documented_route_exists() {
    let routed = template_routes();
    let documented = documented_routes();
    assert!(routed.contains("GET /health/ready"), "{routed:?}");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented paths with no route in template.yaml: {unrouted:?}"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_problem_schema() {
    let document = docs::openapi().unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(document["info"]["title"], "CollectPro API");
    assert!(document["components"]["schemas"]["Problem"].is_object());
}

/// `OPENAPI_OUT=path cargo test -p docs --test openapi` writes the document there (to read
/// or diff it without a running stack).
#[test]
fn the_document_can_be_written_out() {
    let document = docs::openapi().unwrap();
    let text = serde_json::to_string_pretty(&document).unwrap();
    assert!(text.contains("\"/openapi.json\""));
    if let Ok(path) = std::env::var("OPENAPI_OUT") {
        std::fs::write(path, text).unwrap();
    }
}

/// Every `$ref` names a schema the document holds (query parameters' schema-only types are
/// registered by hand in the docs frame).
#[test]
fn every_reference_resolves() {
    fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let document = docs::openapi().unwrap();
    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(found.len() > 50);
    for reference in found {
        assert!(
            document
                .pointer(reference.trim_start_matches('#'))
                .is_some(),
            "dangling {reference}"
        );
    }
}

/// Every operation documents its problems as problem+json, and signed-in ones 401 and 403.
#[test]
fn problems_are_problem_json_everywhere() {
    let document = docs::openapi().unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let content = &response["content"];
                if status.starts_with('4') || status == "500" {
                    assert!(
                        content["application/problem+json"].is_object(),
                        "{method} {path} {status}"
                    );
                }
                assert!(
                    content["application/json"]["schema"]["$ref"] != "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
            if operation["security"].is_array() {
                for status in ["401", "403", "429"] {
                    assert!(
                        operation["responses"][status].is_object(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}
