//! The subcommands of `tether`, one module each.

pub(crate) mod client;
mod common;
pub(crate) mod demo;
pub(crate) mod demo_client;
mod demo_rest;
pub(crate) mod demo_server;
pub(crate) mod echo_server;
mod lifecycle;
pub(crate) mod relay;
pub(crate) mod server;
mod tunnel;
