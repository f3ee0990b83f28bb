//! The codec boundary: how values become journal bytes and back.
//!
//! Everything the journal stores — workflow inputs and outputs, activity results, signal payloads and the
//! events themselves — passes through [`Codec`]. Today it is bincode 2.x (standard configuration, varint
//! integers) over serde; the journal records the format version (see `docs/journal.md`), so the format
//! can change without breaking old journals. Payloads are limited in size: encoding a larger value fails
//! with [`CodecError::PayloadTooLarge`], and decoding never allocates more than the limit.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The default largest payload, in bytes: 4 MiB.
pub const DEFAULT_PAYLOAD_LIMIT: usize = 4 * 1024 * 1024;

/// The largest payload limit an engine accepts (64 MiB): the hard ceiling on any single decoded
/// value. [`EngineBuilder::payload_limit`](crate::EngineBuilder::payload_limit) above it is refused.
pub const MAX_PAYLOAD_LIMIT: usize = 64 * 1024 * 1024;

/// The hard ceiling on any single decoded value, whatever the configured limit.
const DECODE_CEILING: usize = MAX_PAYLOAD_LIMIT;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_CEILING>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<DECODE_CEILING>()
}

/// A value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("cannot encode a `{type_name}`: {message}")]
    Encode {
        /// The Rust type being encoded.
        type_name: &'static str,
        /// The encoder's message.
        message: String,
    },
    /// The bytes do not decode as the expected type.
    #[error("cannot decode a `{type_name}` from {len} bytes: {message}")]
    Decode {
        /// The Rust type expected.
        type_name: &'static str,
        /// The length of the bytes.
        len: usize,
        /// The decoder's message.
        message: String,
    },
    /// The encoded value is larger than the configured payload limit.
    #[error("a `{type_name}` payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The Rust type encoded.
        type_name: &'static str,
        /// Its encoded size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// Encodes and decodes journal payloads under a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    limit: usize,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new(DEFAULT_PAYLOAD_LIMIT)
    }
}

impl Codec {
    /// A codec refusing payloads larger than `limit` bytes (capped at 64 MiB).
    pub fn new(limit: usize) -> Self {
        Codec {
            limit: limit.min(DECODE_CEILING),
        }
    }

    /// The payload limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Encodes `value`, failing if the result exceeds the limit.
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let type_name = std::any::type_name::<T>();
        let bytes =
            bincode::serde::encode_to_vec(value, config()).map_err(|error| CodecError::Encode {
                type_name,
                message: error.to_string(),
            })?;
        if bytes.len() > self.limit {
            return Err(CodecError::PayloadTooLarge {
                type_name,
                size: bytes.len(),
                limit: self.limit,
            });
        }
        Ok(bytes)
    }

    /// Decodes a `T` that must use all of `bytes`.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let type_name = std::any::type_name::<T>();
        let fail = |message: String| CodecError::Decode {
            type_name,
            len: bytes.len(),
            message,
        };
        if bytes.len() > self.limit {
            return Err(CodecError::PayloadTooLarge {
                type_name,
                size: bytes.len(),
                limit: self.limit,
            });
        }
        let (value, used) = bincode::serde::decode_from_slice::<T, _>(bytes, config())
            .map_err(|error| fail(error.to_string()))?;
        if used != bytes.len() {
            return Err(fail(format!(
                "{} trailing bytes after the value",
                bytes.len() - used
            )));
        }
        Ok(value)
    }
}

/// A stable 64-bit fingerprint (FNV-1a) of encoded bytes, journaled to detect changed activity inputs.
pub(crate) fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_values() {
        let codec = Codec::default();
        let bytes = codec.encode(&("loan", 42u32, vec![1u8, 2])).unwrap();
        let back: (String, u32, Vec<u8>) = codec.decode(&bytes).unwrap();
        assert_eq!(back, ("loan".to_string(), 42, vec![1, 2]));
    }

    #[test]
    fn refuses_payloads_over_the_limit() {
        let codec = Codec::new(16);
        let error = codec.encode(&vec![0u8; 100]).unwrap_err();
        assert!(matches!(error, CodecError::PayloadTooLarge { size, limit: 16, .. } if size > 100));
    }

    #[test]
    fn truncated_and_trailing_bytes_are_decode_errors() {
        let codec = Codec::default();
        let bytes = codec.encode(&"hello".to_string()).unwrap();
        assert!(matches!(
            codec.decode::<String>(&bytes[..3]),
            Err(CodecError::Decode { .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            codec.decode::<String>(&longer),
            Err(CodecError::Decode { .. })
        ));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A Vec<u8> claiming u64::MAX elements: must fail, not try to allocate.
        let codec = Codec::default();
        let bytes = [0xFFu8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(codec.decode::<Vec<u8>>(&bytes).is_err());
    }

    #[test]
    fn fingerprint_is_stable() {
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fingerprint(b"a"), fingerprint(b"b"));
    }
}
