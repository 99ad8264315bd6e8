//! Fuzzes the realtime protocol: any text frame either parses into a client message or answers
//! an `error` (code and message), without panicking.
#![no_main]

use hearth::realtime::protocol::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ClientMessage::parse(text) {
        Ok(_) => {}
        Err(err) => {
            let _ = hearth::realtime::protocol::error(err.id.as_deref(), err.code, &err.message);
        }
    }
});
