//! Timestamps with microsecond precision, as stored and as written on the wire (RFC 3339).

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::ModelError;

/// Microseconds since the Unix epoch, UTC. Years 0001–9999, as Firestore allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

const MIN_MICROS: i64 = -62_135_596_800_000_000; // 0001-01-01T00:00:00Z
const MAX_MICROS: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z

impl Timestamp {
    pub fn now() -> Timestamp {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Timestamp((nanos / 1_000) as i64)
    }

    pub fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros.clamp(MIN_MICROS, MAX_MICROS))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339; sub-microsecond digits are truncated.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, ModelError> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|err| {
            ModelError::invalid(format!("'{text}' is not an RFC 3339 timestamp: {err}"))
        })?;
        let micros = parsed.unix_timestamp_nanos().div_euclid(1_000);
        if !(MIN_MICROS as i128..=MAX_MICROS as i128).contains(&micros) {
            return Err(ModelError::invalid(format!(
                "timestamp '{text}' is outside years 1–9999"
            )));
        }
        Ok(Timestamp(micros as i64))
    }

    /// Always six fractional digits and `Z`, e.g. `2026-11-25T10:00:00.123456Z`.
    pub fn to_rfc3339(self) -> String {
        let seconds = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        match OffsetDateTime::from_unix_timestamp(seconds) {
            Ok(dt) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                micros
            ),
            // Unreachable for clamped values; keep a readable fallback rather than panic.
            Err(_) => format!("{}us", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// RFC 3339 of a Unix time in milliseconds (`2026-11-25T10:00:00.123Z`), as the auth and hooks
/// APIs show their bookkeeping times.
pub fn rfc3339_from_unix_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_six_fraction_digits() {
        let ts = Timestamp::parse_rfc3339("2026-11-25T10:00:00.123456789Z").unwrap();
        assert_eq!(ts.to_rfc3339(), "2026-11-25T10:00:00.123456Z");
        let ts = Timestamp::parse_rfc3339("2026-11-25T11:00:00+01:00").unwrap();
        assert_eq!(ts.to_rfc3339(), "2026-11-25T10:00:00.000000Z");
        let ts = Timestamp::parse_rfc3339("1969-12-31T23:59:59.5Z").unwrap();
        assert_eq!(ts.to_rfc3339(), "1969-12-31T23:59:59.500000Z");
    }

    #[test]
    fn refuses_garbage() {
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
