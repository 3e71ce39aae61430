//! The `cni6` operator tool: put cni6 on a node (`install`, `conflist`),
//! see and clean what it holds (`status`, `gc`), feed the fabric
//! (`routes`), and drive a conflist through cni-common's libcni-like
//! runtime the way a container runtime would, without one.
//!
//! - [`cli`]: the clap command tree and the process entry point;
//! - [`commands`]: one module per subcommand;
//! - [`demo`]: `cni6 demo`, a two-node cluster in namespaces;
//! - [`error`]: the crate's one error type, mapped to exit codes;
//! - [`node`]: the node view (networks, allocations, cached attachments,
//!   leaks) that status, gc, install, lint and routes read;
//! - [`options`]: the option types and the output sink commands share;
//! - [`render`]: human-readable summaries of CNI results.

pub mod cli;
pub mod commands;
pub mod demo;
pub mod error;
pub mod node;
pub mod options;
pub mod render;
