//! Fuzzes the JSON-to-value decoder: any bytes either fail to decode or give a value whose wire
//! form decodes back to the same value and whose index encoding orders consistently.
#![no_main]

use hearth::model::keys::encode_value;
use hearth::model::{InputValue, SentinelPlace, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    for place in [SentinelPlace::Forbidden, SentinelPlace::Write, SentinelPlace::UpdateField] {
        let _ = InputValue::from_json(&json, place);
    }
    if let Ok(value) = Value::from_json(&json) {
        let again = Value::from_json(&value.to_json()).expect("a decoded value re-decodes");
        assert_eq!(value, again);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_value(&mut a, &value);
        encode_value(&mut b, &again);
        assert_eq!(a, b);
    }
});
