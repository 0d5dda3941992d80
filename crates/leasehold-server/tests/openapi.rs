//! `/openapi.json` against the router: every documented operation is served
//! (not the 404/405 fallbacks), and on every documented path the router
//! answers no method the document does not list. Together with
//! `auth_matrix::the_matrix_covers_every_route_in_the_openapi_document` (the
//! document equals the contract's route list) this pins router == document.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn router_and_openapi_document_agree() {
    let app = App::new();
    app.seed_leased("own", "w1");
    let doc = app.call("GET", "/openapi.json", None, None).await.json;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let all = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    let mut probed = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", "own").replace("{index}", "0");
        let documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        for method in all {
            let r = app
                .call(method, &concrete, Some(&app.op), Some(json!({})))
                .await;
            let fallback = r.status == 405
                || (r.status == 404
                    && r.json["detail"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("no route"));
            if documented.iter().any(|m| m == method) {
                assert!(
                    !fallback,
                    "{method} {path} is documented but not routed: {}",
                    r.text
                );
            } else {
                assert_eq!(
                    r.status, 405,
                    "{method} {path} is routed but not documented: {}",
                    r.text
                );
            }
            probed += 1;
        }
    }
    assert_eq!(probed, paths.len() * all.len());
}

#[tokio::test]
async fn documented_schemas_name_exactly_the_fields_the_core_serialises() {
    use leasehold_core::Store;
    let app = App::new();
    app.seed_leased("own", "w1");
    app.store
        .annotate("own", "op", "a note", &app.ctx())
        .unwrap();
    let task = serde_json::to_value(app.store.require("own").unwrap()).unwrap();
    let entry = serde_json::to_value(&app.store.history("own").unwrap()[0]).unwrap();
    let doc = app.call("GET", "/openapi.json", None, None).await.json;
    let schemas = &doc["components"]["schemas"];
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    for (name, real) in [
        ("Task", &task),
        ("Compensation", &task["compensations"][0]),
        ("Note", &task["notes"][0]),
        ("HistoryEntry", &entry),
    ] {
        let documented = &schemas[name]["properties"];
        assert!(documented.is_object(), "schema {name} missing: {}", schemas);
        assert_eq!(
            keys(documented),
            keys(real),
            "schema {name} drifted from the core type"
        );
    }
    assert!(schemas["Problem"]["properties"]["code"].is_object());
}
