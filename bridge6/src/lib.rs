//! bridge6
