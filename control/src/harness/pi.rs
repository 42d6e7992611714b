//! The managed pi harness (`harness: pi`): the control plane runs pi's coding-agent loop. It
//! calls the model, runs each tool call in the session's sandbox through sandboxd (or asks the
//! client, for external tools), and commits every step before the next one starts.

pub mod backoff;
pub mod model;
pub mod prompt;
pub mod provider;
pub mod tools;
