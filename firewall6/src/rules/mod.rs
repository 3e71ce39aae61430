//! Pure rule logic: the text of every rule firewall6 owns, the
//! `ip6tables-restore` batches that install and remove them, and the
//! parsing of `ip6tables -S` listings that finds them again. No process is
//! run here, so all of it is unit-tested without root.
//!
//! Every rule is written in exactly the form `ip6tables -S` prints it back
//! (address with prefix length, `-m tcp` after `-p tcp`, matches in the
//! order the save format uses, the comment quoted). That makes CHECK a
//! comparison of strings and DEL a `-D` of the listed line, and the
//! conformance suite proves the round trip on the real binary.

mod listing;
mod pod;
mod skeleton;
#[cfg(test)]
pub(crate) mod tests;

pub use crate::chains::*;
pub use listing::*;
pub use pod::*;
pub use skeleton::*;
