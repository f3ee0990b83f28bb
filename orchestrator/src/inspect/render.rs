//! Payloads shown as JSON, and times shown as RFC 3339.

use serde::{Deserialize, Serialize};

use super::catalog::PayloadType;
use crate::codec::Codec;

/// The largest rendered JSON kept in a description, in bytes (64 KiB): larger payloads are shown as
/// [`Rendered::Opaque`] with a note.
pub const MAX_RENDERED_JSON: usize = 64 * 1024;

/// How many leading bytes of an opaque payload are shown, in hex.
const HEX_PREFIX: usize = 32;

/// A journaled payload as people (and the admin API) see it.
///
/// Serialized as `{"json": <value>}` or `{"opaque": {"size": .., "hex_prefix": "..", "note": ".."}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rendered {
    /// Decoded with its registered type and re-encoded as JSON.
    Json(serde_json::Value),
    /// Not decodable here: its size and its first bytes.
    Opaque {
        /// The encoded size in bytes.
        size: usize,
        /// The first bytes (up to 32), in lowercase hex.
        hex_prefix: String,
        /// Why it is not shown as JSON (type unknown to this engine, bytes that do not decode, too
        /// large).
        note: String,
    },
}

impl Rendered {
    /// The bytes shown opaquely, with `note` saying why.
    pub(crate) fn opaque(bytes: &[u8], note: impl Into<String>) -> Self {
        let mut hex_prefix = String::with_capacity(HEX_PREFIX * 2);
        for byte in bytes.iter().take(HEX_PREFIX) {
            hex_prefix.push_str(&format!("{byte:02x}"));
        }
        Rendered::Opaque {
            size: bytes.len(),
            hex_prefix,
            note: note.into(),
        }
    }

    /// `bytes` decoded through `ty` when known; opaque otherwise, or when they do not decode, or when
    /// the JSON would exceed [`MAX_RENDERED_JSON`].
    pub(crate) fn payload(codec: &Codec, ty: Option<PayloadType>, bytes: &[u8]) -> Self {
        let Some(ty) = ty else {
            return Rendered::opaque(bytes, "type not known to this engine");
        };
        if bytes.len() > MAX_RENDERED_JSON {
            return Rendered::opaque(bytes, format!("{} bytes: too large to render", bytes.len()));
        }
        match ty.render(codec, bytes) {
            Ok(value) => Rendered::json(value, bytes),
            Err(error) => Rendered::opaque(
                bytes,
                format!("does not decode as `{}`: {error}", ty.type_name),
            ),
        }
    }

    /// A value the engine itself knows how to show (errors, park reasons).
    pub(crate) fn value<T: Serialize>(value: &T) -> Self {
        match serde_json::to_value(value) {
            Ok(json) => Rendered::json(json, &[]),
            Err(error) => Rendered::opaque(&[], format!("cannot render: {error}")),
        }
    }

    fn json(value: serde_json::Value, bytes: &[u8]) -> Self {
        let size = serde_json::to_string(&value).map_or(usize::MAX, |text| text.len());
        if size > MAX_RENDERED_JSON {
            Rendered::opaque(
                bytes,
                format!("renders as {size} bytes of JSON: over the 64 KiB limit"),
            )
        } else {
            Rendered::Json(value)
        }
    }

    /// The JSON value, if rendered as JSON.
    pub fn as_json(&self) -> Option<&serde_json::Value> {
        match self {
            Rendered::Json(value) => Some(value),
            Rendered::Opaque { .. } => None,
        }
    }
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rendered::Json(value) => write!(f, "{value}"),
            Rendered::Opaque {
                size, hex_prefix, ..
            } => write!(f, "<{size} bytes: {hex_prefix}>"),
        }
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds, e.g.
/// `2026-12-02T14:03:05.123Z`.
///
/// ```
/// assert_eq!(orchestrator::inspect::rfc3339(0), "1970-01-01T00:00:00.000Z");
/// assert_eq!(orchestrator::inspect::rfc3339(1_796_220_185_123), "2026-12-02T14:03:05.123Z");
/// ```
pub fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hours, minutes) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (seconds, millis) = (in_day / 1_000 % 60, in_day % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z")
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_across_leap_years_and_before_the_epoch() {
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn unknown_and_corrupt_payloads_are_opaque() {
        let codec = Codec::default();
        let bytes = codec.encode(&"hello".to_string()).unwrap();
        assert_eq!(
            Rendered::payload(&codec, Some(PayloadType::of::<String>()), &bytes),
            Rendered::Json(serde_json::json!("hello"))
        );
        assert!(matches!(
            Rendered::payload(&codec, None, &bytes),
            Rendered::Opaque { size: 6, ref hex_prefix, .. } if hex_prefix == "0568656c6c6f"
        ));
        assert!(matches!(
            Rendered::payload(&codec, Some(PayloadType::of::<u64>()), &[0xff, 0xff]),
            Rendered::Opaque { size: 2, .. }
        ));
    }

    #[test]
    fn large_json_collapses() {
        let codec = Codec::default();
        let big = "x".repeat(MAX_RENDERED_JSON);
        let bytes = codec.encode(&big).unwrap();
        assert!(matches!(
            Rendered::payload(&codec, Some(PayloadType::of::<String>()), &bytes),
            Rendered::Opaque { .. }
        ));
    }
}
