//! Replays every committed fuzz input (`tests/fuzz/corpus/<target>/*`, seeds and the inputs
//! that once crashed) through its target, on stable Rust.

use std::path::Path;

#[test]
fn every_committed_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut replayed = 0;
    for (name, target) in devext_fuzz_targets::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        files.sort();
        assert!(
            files.len() >= 3,
            "{name}: a corpus of seeds is committed ({} files)",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).expect("read a corpus file");
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", file.display());
            replayed += 1;
        }
    }
    println!("{replayed} inputs replayed");
}
