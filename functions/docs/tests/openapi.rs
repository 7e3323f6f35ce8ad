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
