//! One module per `cni6` subcommand: its clap arguments and its logic.

pub mod attach;
pub mod gc;
pub mod plugin_status;
pub mod version;
