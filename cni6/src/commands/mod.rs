//! One module per `cni6` subcommand: its clap arguments and its logic.

pub mod attach;
pub mod conflist;
pub mod gc;
pub mod install;
pub mod lint;
pub mod nat64;
pub mod plugin_status;
pub mod routes;
pub mod status;
pub mod version;
