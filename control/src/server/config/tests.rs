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
