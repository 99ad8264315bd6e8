//! Keeps ARCHITECTURE.md honest: every repository path it names in backquotes must exist.

use std::path::Path;

#[test]
fn every_path_named_in_architecture_md_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut checked = 0;
    for (i, quoted) in text.split('`').enumerate() {
        // Odd pieces are inside backquotes.
        if i % 2 == 0 {
            continue;
        }
        // A path: no spaces, a slash, and either a trailing slash or a file extension.
        let path = quoted.split("::").next().unwrap_or_default();
        let looks_like_path = !path.contains(' ')
            && path.contains('/')
            && !path.starts_with('/')
            && !path.starts_with("..")
            && (path.ends_with('/') || path.rsplit('/').next().is_some_and(|f| f.contains('.')));
        if !looks_like_path {
            continue;
        }
        checked += 1;
        assert!(
            root.join(path).exists(),
            "ARCHITECTURE.md names `{path}`, which does not exist"
        );
    }
    assert!(
        checked >= 10,
        "only {checked} paths found: the check would prove nothing"
    );
}
