//! cni-common: what every cni6 plugin and tool shares.
//!
//! - [`error`]: the one error type and its CNI codes;
//! - [`version`], [`env`], [`config`], [`result`]: the protocol's types,
//!   parsed leniently and emitted strictly in the requested version;
//! - [`dispatch`]: the plugin entry point (VERSION, validation, output),
//!   with [`calllog`] for the optional per-call `logFile`;
//! - [`delegate`]: running the IPAM plugin;
//! - [`netns`], [`netlink`]: safe namespace entry and synchronous netlink;
//! - [`runtime`]: a libcni-like executor of whole conflists.

pub mod calllog;
pub mod config;
pub mod delegate;
pub mod dispatch;
pub mod env;
pub mod error;
pub mod netlink;
pub mod netns;
pub mod result;
pub mod runtime;
pub mod version;

pub use error::{Error, Result};
