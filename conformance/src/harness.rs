//! Black-box invocation helpers (filled by the conformance suite).
