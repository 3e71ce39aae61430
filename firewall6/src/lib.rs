//! firewall6
