//! The one place sandboxd starts child processes. Every child gets a working directory, an
//! environment and stdio chosen by the caller, and its own process group, so that it can be
//! killed whole.
