//! End-to-end tests: one test binary, one module per area. Each test starts the real binaries.

mod api_auth;
mod architecture;
mod bundle_extract;
mod bundle_materialize;
mod claude_sdk;
mod daemon_ops;
mod deploy;
mod deploy_dry_run;
mod durability;
mod e2b;
mod execution;
mod files;
mod hub;
mod images;
mod jail;
mod link;
mod manifest_corpus;
mod manifest_fuzz;
mod pi;
mod sandbox_secrets;
mod sandbox_tokens;
mod sessions;
mod static_binary;
mod validate;
