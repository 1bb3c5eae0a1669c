//! The subcommands of `tether`, one module each.

mod common;
pub(crate) mod demo_client;
pub(crate) mod demo_server;
pub(crate) mod echo_server;
