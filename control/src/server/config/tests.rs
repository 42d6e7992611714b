use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Command {
    #[command(flatten)]
    server: ServerArgs,
}

#[track_caller]
fn check(args: &[&str], expect: Result<&[(&str, &str)], &str>) {
    let command = Command::try_parse_from(std::iter::once("dari").chain(args.iter().copied())).expect("flags parse");
    match (ServerConfig::from_args(command.server, PathBuf::from("/tmp/data")), expect) {
        (Ok(config), Ok(expected)) => {
            let expected: BTreeMap<String, String> =
                expected.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
            assert_eq!(config.execution.sandbox_env, expected);
        }
        (Err(error), Err(expected)) => {
            let message = format!("{error:#}");
            assert!(message.contains(expected), "{message:?} does not mention {expected:?}");
        }
        (Ok(config), Err(expected)) => panic!("expected an error mentioning {expected:?}, got {config:?}"),
        (Err(error), Ok(_)) => panic!("expected a configuration, got {error:#}"),
    }
}

#[test]
fn sandbox_env_takes_repeated_pairs_and_lines() {
    check(&[], Ok(&[]));
    check(
        &[
            "--sandbox-env",
            "ANTHROPIC_BASE_URL=http://127.0.0.1:9/x=y",
            "--sandbox-env",
            "NO_PROXY=localhost,127.0.0.1",
        ],
        Ok(&[("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/x=y"), ("NO_PROXY", "localhost,127.0.0.1")]),
    );
    // DARI_SANDBOX_ENV's form: one pair per line, blank lines skipped, the last of a name wins.
    check(&["--sandbox-env", "A=1\n\nB=\r\nA=2\n"], Ok(&[("A", "2"), ("B", "")]));
}

#[test]
fn sandbox_env_refuses_what_is_not_a_variable_and_never_echoes_values() {
    check(&["--sandbox-env", "no-equals-sign-secret"], Err("takes KEY=VALUE"));
    check(&["--sandbox-env", "1X=secret"], Err("\"1X\" is not an environment variable name"));
    check(&["--sandbox-env", "SANDBOXD_TOKEN=secret"], Err("SANDBOXD_TOKEN is the sandbox daemon's own"));
    let command = Command::try_parse_from(["dari", "--sandbox-env", "bad key=hunter2"]).expect("flags parse");
    let error = ServerConfig::from_args(command.server, PathBuf::from("/tmp")).expect_err("a bad key");
    assert!(!format!("{error:#}").contains("hunter2"), "{error:#}");
}

#[track_caller]
fn check_provider(args: &[&str], api_key: Option<&str>, expect: Result<&str, &str>) {
    let command = Command::try_parse_from(std::iter::once("dari").chain(args.iter().copied())).expect("flags parse");
    let env = |name: &str| (name == ENV_E2B_API_KEY).then(|| api_key.map(str::to_owned)).flatten();
    match (ServerConfig::from_args_and_env(command.server, PathBuf::from("/tmp/data"), env), expect) {
        (Ok(config), Ok(expected)) => assert_eq!(format!("{:?}", config.execution.provider), expected),
        (Err(error), Err(expected)) => {
            let message = format!("{error:#}");
            assert!(message.contains(expected), "{message:?} does not mention {expected:?}");
            assert!(!message.contains("e2b_key"), "the key is never shown: {message}");
        }
        (Ok(config), Err(expected)) => panic!("expected an error mentioning {expected:?}, got {config:?}"),
        (Err(error), Ok(_)) => panic!("expected a configuration, got {error:#}"),
    }
}

#[test]
fn the_provider_is_local_by_default_and_e2b_needs_a_key_and_a_reachable_link() {
    check_provider(&[], None, Ok("Local"));
    let link = ["--sandbox-provider", "e2b", "--link-url", "wss://dari.example.com"];
    check_provider(
        &link,
        Some("e2b_key"),
        Ok(
            r#"E2b(E2bConfig { api_url: "https://api.e2b.app", sandbox_url: None, template: "dari-sandbox", timeout: 3600s, sandbox_env: [], api_key: "<redacted>" })"#,
        ),
    );
    let custom = [
        &link[..],
        &[
            "--e2b-api-url",
            "http://127.0.0.1:9/",
            "--e2b-template",
            "mine",
            "--e2b-timeout",
            "10m",
            "--sandbox-env",
            "A=1",
        ],
    ]
    .concat();
    check_provider(
        &custom,
        Some("e2b_key"),
        Ok(
            r#"E2b(E2bConfig { api_url: "http://127.0.0.1:9", sandbox_url: None, template: "mine", timeout: 600s, sandbox_env: ["A"], api_key: "<redacted>" })"#,
        ),
    );
    check_provider(&link, None, Err("needs the E2B API key in E2B_API_KEY"));
    check_provider(&link, Some("  "), Err("needs the E2B API key in E2B_API_KEY"));
    check_provider(&["--sandbox-provider", "e2b"], Some("e2b_key"), Err("needs --link-url (DARI_LINK_URL)"));
    check_provider(
        &["--sandbox-provider", "e2b", "--link-url", "unix:///run/dari/link.sock"],
        Some("e2b_key"),
        Err("ws:// or wss://, not \"unix:///run/dari/link.sock\""),
    );
    check_provider(&[&link[..], &["--e2b-api-url", "api.e2b.app"]].concat(), Some("e2b_key"), Err("--e2b-api-url"));
    check_provider(&[&link[..], &["--e2b-timeout", "500ms"]].concat(), Some("e2b_key"), Err("--e2b-timeout"));
}
