//! Fuzzes write decoding and application: document bodies and update field maps either fail
//! with an error or apply to an empty or existing document without panicking.
#![no_main]

use hearth::docs::write::{apply_write, Precondition, Write, WriteKind};
use hearth::model::{DocPath, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(path) = DocPath::parse("fuzz/doc") else { return };
    let now = Timestamp::from_micros(0);
    let mut current = None;
    if let Ok(fields) = Write::data_from_json(&json) {
        let write = Write { path: path.clone(), kind: WriteKind::Set(fields), precondition: Precondition::None };
        if let Ok((Some(data), _)) = apply_write(None, &write, now) {
            current = Some(hearth::model::Document { path: path.clone(), data, create_time: now, update_time: now, version: 1 });
        }
    }
    if let Ok(fields) = Write::fields_from_json(&json) {
        let write = Write { path, kind: WriteKind::Update(fields), precondition: Precondition::None };
        let _ = apply_write(current.as_ref(), &write, now);
    }
});
