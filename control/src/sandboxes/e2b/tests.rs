use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::envd::{envelope, next_envelope};
use super::*;
use crate::sandboxes::SandboxEnv;

fn config() -> E2bConfig {
    E2bConfig {
        api_url: "https://api.e2b.app".to_owned(),
        sandbox_url: None,
        template: "dari-sandbox".to_owned(),
        timeout: Duration::from_secs(3600),
        sandbox_env: BTreeMap::from([
            ("GREETING".to_owned(), "from the operator".to_owned()),
            ("HTTPS_PROXY".to_owned(), "http://proxy:3128".to_owned()),
        ]),
        api_key: "e2b_0123456789abcdef".to_owned(),
    }
}

fn request(internet_access: bool) -> ProvisionRequest {
    ProvisionRequest {
        sandbox_id: "sbx_1".to_owned(),
        session_id: "ses_1".to_owned(),
        org_id: "org_1".to_owned(),
        control_url: "wss://dari.example.com:8443".to_owned(),
        token: "sbt_secret".to_owned(),
        internet_access,
        resources: Default::default(),
        runtime_layer: None,
        env: SandboxEnv(BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())])),
    }
}

#[track_caller]
fn check_body(internet_access: bool, expect: &Value) {
    assert_eq!(&create_body(&config(), &request(internet_access)), expect);
}

#[test]
fn the_create_body_is_e2bs_new_sandbox_without_the_daemons_token() {
    let common = json!({
        "templateID": "dari-sandbox",
        "timeout": 3600,
        "autoPause": false,
        "secure": true,
        "metadata": {"dari_org_id": "org_1", "dari_sandbox_id": "sbx_1", "dari_session_id": "ses_1"},
        "envVars": {"GREETING": "hello", "HTTPS_PROXY": "http://proxy:3128"},
    });
    check_body(true, &common);
    let mut closed = common.clone();
    closed["network"] = json!({"denyOut": ["0.0.0.0/0"], "allowOut": ["dari.example.com"]});
    check_body(false, &closed);
    assert!(!create_body(&config(), &request(true)).to_string().contains("sbt_secret"), "the token goes to envd only");
}

#[test]
fn the_created_sandbox_is_read_from_e2bs_answer_ignoring_unknown_fields() {
    let answer = json!({
        "templateID": "rki5dems9wqfm4r03t7g",
        "sandboxID": "i1234abcd",
        "alias": "dari-sandbox",
        "clientID": "6532622b",
        "envdVersion": "0.2.0",
        "envdAccessToken": "envd-token",
        "trafficAccessToken": null,
        "domain": "e2b.app",
        "somethingNew": 1,
    });
    let created: CreatedSandbox = serde_json::from_value(answer).expect("a Sandbox");
    assert_eq!(created.sandbox_id, "i1234abcd");
    assert_eq!(created.envd_access_token.as_deref(), Some("envd-token"));
    assert_eq!(created.domain.as_deref(), Some("e2b.app"));
    let minimal: CreatedSandbox =
        serde_json::from_value(json!({"sandboxID": "i1", "templateID": "t", "clientID": "c", "envdVersion": "0.1"}))
            .expect("the required fields only");
    assert_eq!((minimal.envd_access_token, minimal.domain), (None, None));
}

#[test]
fn envd_is_each_sandboxs_host_unless_one_url_serves_them_all() {
    let created: CreatedSandbox = serde_json::from_value(json!({"sandboxID": "i1"})).expect("a Sandbox");
    let provider = E2bProvider::new(config()).expect("a provider");
    assert_eq!(provider.envd_url(&created), "https://49983-i1.e2b.app", "the domain from the API's host");
    let created: CreatedSandbox =
        serde_json::from_value(json!({"sandboxID": "i1", "domain": "eu.e2b.dev"})).expect("a Sandbox");
    assert_eq!(provider.envd_url(&created), "https://49983-i1.eu.e2b.dev", "the answer's domain wins");
    let shared = E2bConfig { sandbox_url: Some("http://127.0.0.1:9".to_owned()), ..config() };
    assert_eq!(E2bProvider::new(shared).expect("a provider").envd_url(&created), "http://127.0.0.1:9");
}

#[test]
fn the_config_hides_the_api_key() {
    let shown = format!("{:?}", E2bProvider::new(config()).expect("a provider"));
    assert!(!shown.contains("e2b_0123456789abcdef"), "{shown}");
}

#[test]
fn connect_envelopes_round_trip_and_wait_for_whole_messages() {
    let mut buffer = envelope(0, &json!({"event": {"start": {"pid": 42}}}));
    buffer.extend(envelope(2, &json!({})));
    let whole = buffer.clone();
    let mut partial = whole[..7].to_vec();
    assert_eq!(next_envelope(&mut partial).expect("a valid prefix"), None, "a message in pieces waits");
    let (flags, body) = next_envelope(&mut buffer).expect("valid").expect("a message");
    assert_eq!(flags, 0);
    assert_eq!(serde_json::from_slice::<Value>(&body).expect("JSON")["event"]["start"]["pid"], 42);
    let (flags, body) = next_envelope(&mut buffer).expect("valid").expect("the end");
    assert_eq!((flags, body.as_slice()), (2, b"{}".as_slice()));
    assert!(buffer.is_empty());
    let mut huge = vec![0, 0xff, 0xff, 0xff, 0xff];
    assert!(next_envelope(&mut huge).is_err(), "a length beyond the limit is refused");
}
