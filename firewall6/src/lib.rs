//! firewall6: the chained ip6tables plugin of cni6 (issue 4).
//!
//! Not written yet: this crate holds no code and ships no binary, so nothing
//! can mistake it for a working firewall.
