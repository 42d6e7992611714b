//! `docs/openapi.json` is the document the server serves: regenerate it with
//! `UPDATE_OPENAPI=1 cargo test -p dari-control openapi` after changing the API.

use super::*;

#[test]
fn docs_openapi_json_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let generated = format!("{}\n", openapi_json());
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == generated,
        "docs/openapi.json is out of date; run `UPDATE_OPENAPI=1 cargo test -p dari-control openapi` and commit it"
    );
}

#[test]
fn every_operation_has_a_unique_id_and_documents_its_errors() {
    let document: serde_json::Value = serde_json::from_str(&openapi_json()).expect("JSON");
    let mut ids = std::collections::BTreeSet::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(responses.keys().any(|status| status.starts_with('4')), "{method} {path} documents no 4xx answer");
            for placeholder in path.split('{').skip(1).filter_map(|rest| rest.split('}').next()) {
                let declared = operation["parameters"]
                    .as_array()
                    .is_some_and(|parameters| parameters.iter().any(|parameter| parameter["name"] == placeholder));
                assert!(declared, "{method} {path} does not declare path parameter {placeholder}");
            }
        }
    }
}
