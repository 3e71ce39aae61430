//! Multi-node topology fixture (filled by the multi-node proof).
