//! The processes the `enspace` binary runs, composed from the service
//! crates. A library so that tests can run them in-process.

pub mod cli;
pub mod embedded;
pub mod run;
