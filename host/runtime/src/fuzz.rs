//! Entry points for the fuzz targets (`tests/fuzz`), behind the `fuzzing` feature: the host's
//! parsers of untrusted text, each wrapped with the properties it must keep whatever its input.
//! Not part of the API (hidden from the docs, may change any time).
//!
//! Each function panics when a property is broken, which is what a fuzzer reports.

use serde_json::Value;

use crate::Runtime;
use crate::validate::{Diagnostic, Kind};

/// A manifest as a plugin's `manifest()` would return it: read like the loader reads it, then
/// checked (every schema compiled). Never panics; `Err` is the refusal the host would show.
pub fn check_manifest_json(json: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(json).map_err(|e| e.to_string())?;
    let mut manifest: devext_plugin_api::Manifest =
        serde_json::from_str(text).map_err(|e| e.to_string())?;
    crate::loader::declare_as_of(&mut manifest);
    match crate::loader::check_manifest(&manifest) {
        Ok(_) => Ok(()),
        Err(problems) => {
            assert!(!problems.is_empty(), "a refused manifest names a problem");
            Err(problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "))
        }
    }
}

/// The JSON-pointer locator on `text` (any bytes) and `pointer` (any text).
///
/// Properties: no panic; offsets stay inside the text; and when `text` is JSON and `pointer`
/// names a value in it (as serde_json reads pointers), the locator finds that very value.
pub fn locate(text: &[u8], pointer: &str) {
    use crate::validate::locate;
    let at = locate::value_offset(text, pointer);
    if let Some(at) = at {
        assert!(at <= text.len(), "offset {at} beyond the text");
        let (line, col) = locate::line_col(text, at);
        assert!(line >= 1 && col >= 1);
    }
    let echoed = locate::value_text(text, pointer);
    let _ = locate::char_col(text, pointer.len() % 7, pointer.len());
    let Ok(doc) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    let Some(expected) = doc.pointer(pointer) else {
        return;
    };
    let at = at.unwrap_or_else(|| panic!("{pointer:?} names a value but was not located"));
    let echoed = echoed.unwrap_or_else(|| panic!("{pointer:?} located at {at} but not echoed"));
    let found: Value = serde_json::from_str(&echoed)
        .unwrap_or_else(|e| panic!("echo of {pointer:?} is not JSON ({e}): {echoed}"));
    assert_eq!(&found, expected, "{pointer:?} located the wrong value");
    if let Value::Object(map) = expected {
        for key in map.keys() {
            let k = locate::key_offset(text, at, key)
                .unwrap_or_else(|| panic!("key {key:?} of {pointer:?} not found"));
            assert_eq!(text.get(k), Some(&b'"'), "a key offset is at its quote");
        }
    }
}

/// One document (any bytes) through `devext validate`'s checks with `runtime`'s plugins.
///
/// Properties: no panic; the fast and the full validation agree (valid exactly when there is
/// no violation); every diagnostic has a position inside the document; a document that is not
/// JSON gets exactly one `not_json` diagnostic.
pub fn validate_document(runtime: &Runtime, text: &[u8]) -> Vec<Diagnostic> {
    let (summary, diagnostics) = crate::validate::validate_one(runtime, text, false);
    assert_eq!(summary.documents, 1);
    let lines = text.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    for d in &diagnostics {
        let line = d.line.expect("a document's diagnostics have a line");
        assert!((1..=lines).contains(&line), "line {line} of {lines}: {d:?}");
        assert!(d.column.is_some_and(|c| c >= 1), "{d:?}");
    }
    match serde_json::from_slice::<Value>(text) {
        Err(_) => {
            assert_eq!(summary.not_json, 1);
            assert_eq!(diagnostics.len(), 1);
            assert_eq!(diagnostics[0].kind, Kind::NotJson);
        }
        Ok(doc) => {
            let fast = runtime.is_valid_device_extensions(&doc);
            let full = runtime.validate_device_extensions(&doc);
            assert_eq!(
                fast,
                full.is_empty(),
                "fast and full validation disagree: {full:?}"
            );
            let invalid = diagnostics
                .iter()
                .filter(|d| d.kind == Kind::Invalid)
                .count();
            assert_eq!(invalid, full.len(), "one diagnostic per violation");
            assert_eq!(summary.invalid, u64::from(!fast));
            if fast {
                let warnings = runtime.device_warnings(&doc);
                assert_eq!(summary.warnings, warnings.len() as u64);
            }
        }
    }
    diagnostics
}
