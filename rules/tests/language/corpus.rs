//! Runs every realistic ruleset in `rules/corpus/*.rules` against its `*.cases.json`.

use std::path::PathBuf;

use hearth_rules::{run_cases, Ruleset};

#[test]
fn every_corpus_ruleset_passes_its_cases() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut rules_files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rules"))
        .collect();
    rules_files.sort();
    assert!(
        rules_files.len() >= 6,
        "corpus is missing files: {rules_files:?}"
    );
    let mut failures = Vec::new();
    let mut total = 0;
    for rules_path in rules_files {
        let source = std::fs::read_to_string(&rules_path).unwrap();
        let ruleset = Ruleset::parse(&source).unwrap_or_else(|errors| {
            panic!(
                "{}:\n{}",
                rules_path.display(),
                hearth_rules::format_errors(&errors)
            )
        });
        let cases_path = rules_path.with_extension("cases.json");
        let cases = std::fs::read_to_string(&cases_path)
            .unwrap_or_else(|_| panic!("missing {}", cases_path.display()));
        let report = run_cases(&ruleset, &cases)
            .unwrap_or_else(|error| panic!("{}: {error}", cases_path.display()));
        total += report.results.len();
        if !report.all_passed() {
            failures.push(format!("{}:\n{report}", rules_path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(total >= 90, "only {total} corpus cases");
}

#[test]
fn the_report_prints_failures_and_a_summary_line() {
    let ruleset = Ruleset::parse(
        "rules_version = '2'; service cloud.firestore { match /databases/{database}/documents {
           match /a/{b} { allow get: if request.auth != null; } } }",
    )
    .unwrap();
    let report = run_cases(
        &ruleset,
        r#"{"cases": [
            {"name": "signed in", "auth": {"uid": "u"}, "method": "get", "path": "a/1", "expect": "allow"},
            {"name": "wrong expectation", "method": "get", "path": "a/1", "expect": "allow"}
        ]}"#,
    )
    .unwrap();
    assert_eq!((report.passed(), report.failed()), (1, 1));
    let text = report.to_string();
    assert!(
        text.starts_with("FAIL wrong expectation: expected allow, got deny\n"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("1 passed, 1 failed"));
    assert!(run_cases(&ruleset, "{\"cases\": [{\"name\": \"x\"}]}").is_err());
    assert!(run_cases(&ruleset, "{\"cases\": [], \"bogus\": 1}").is_err());
}
