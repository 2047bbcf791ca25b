//! Another crate's binary, for tests that drive two programs (the CLI's
//! tests run the real gateway). Cargo hands a test only its own crate's
//! binaries, so this finds the sibling in the same target directory and
//! refuses a stale one rather than building from inside a test.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// `target/<profile>/<name>`, built by `cargo test --workspace` (or
/// `cargo build -p <crate>`). Panics, saying what to run, when it is
/// missing or older than the sources it is built from (`sources`, folders
/// relative to the workspace root).
pub fn sibling(own_binary: &str, name: &str, sources: &[&str]) -> PathBuf {
    let bin = Path::new(own_binary).with_file_name(name);
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "no {name} binary at {}: run `cargo test --workspace` (or `cargo build -p {name}` first)",
                bin.display()
            )
        });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for source in sources {
        if let Some((path, changed)) = newest(&root.join(source))
            && changed > built
        {
            panic!(
                "{} is older than {}: run `cargo test --workspace` (or `cargo build -p {name}` first)",
                bin.display(),
                path.display()
            );
        }
    }
    bin
}

/// The most recently changed file under `dir`.
fn newest(dir: &Path) -> Option<(PathBuf, SystemTime)> {
    let mut best: Option<(PathBuf, SystemTime)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (path, t))
        };
        if let Some((path, time)) = found
            && best.as_ref().is_none_or(|(_, t)| time > *t)
        {
            best = Some((path, time));
        }
    }
    best
}
