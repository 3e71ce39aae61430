//! ipam-prefix
