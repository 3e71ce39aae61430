//! Data files shared by the test suites (conflists, the bad-input corpus),
//! located through this crate so every suite finds them the same way,
//! whatever the current directory of the test process.

use std::path::PathBuf;

/// The `testdata/` directory of the workspace.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `testdata/bad-input/`: malformed and hostile plugin inputs (format in
/// testdata/README.md).
pub fn bad_input_dir() -> PathBuf {
    dir().join("bad-input")
}

/// `testdata/conflists/`.
pub fn conflists_dir() -> PathBuf {
    dir().join("conflists")
}

/// `testdata/lint/`: broken (and one sound) network configuration lists
/// for `cni6 lint` (format in testdata/README.md).
pub fn lint_dir() -> PathBuf {
    dir().join("lint")
}

#[cfg(test)]
mod tests {
    #[test]
    fn dir_holds_the_readme() {
        assert!(super::dir().join("README.md").is_file());
    }
}
