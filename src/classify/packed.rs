//! Vectors of integers as the policy cache stores them: one little-endian byte string each.
//!
//! Serde writes a `Vec<u16>` as a sequence and reads it back element by element, through a
//! visitor call and a variable-length integer each: for a 5,000-rule policy's zone-pair index
//! and port tables (a quarter of a million values and more) that was most of a cached start. A
//! byte string reads back as one copy and a loop over fixed-size chunks. Used as
//! `#[serde(with = "packed")]` on `Vec<T>` fields whose `T` is [`Packed`].

use serde::de::{Deserializer, Error, Visitor};
use serde::ser::Serializer;

use super::Verdict;

/// A value with a fixed little-endian encoding of [`Packed::BYTES`] bytes.
pub trait Packed: Copy {
    /// Bytes a value takes.
    const BYTES: usize;
    /// Appends the value's bytes.
    fn pack(self, out: &mut Vec<u8>);
    /// The value of exactly [`Packed::BYTES`] bytes.
    fn unpack(bytes: &[u8]) -> Self;
}

impl Packed for u16 {
    const BYTES: usize = 2;
    fn pack(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn unpack(bytes: &[u8]) -> Self {
        u16::from_le_bytes([bytes[0], bytes[1]])
    }
}

impl Packed for u32 {
    const BYTES: usize = 4;
    fn pack(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn unpack(bytes: &[u8]) -> Self {
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}

impl Packed for Verdict {
    const BYTES: usize = 8;
    fn pack(self, out: &mut Vec<u8>) {
        self.rule.pack(out);
        self.rule_service.pack(out);
    }
    fn unpack(bytes: &[u8]) -> Self {
        Verdict {
            rule: u32::unpack(&bytes[..4]),
            rule_service: u32::unpack(&bytes[4..8]),
        }
    }
}

/// Writes `values` as one byte string.
pub fn serialize<T: Packed, S: Serializer>(values: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    let mut bytes = Vec::with_capacity(values.len() * T::BYTES);
    for &value in values {
        value.pack(&mut bytes);
    }
    serializer.serialize_bytes(&bytes)
}

/// Reads values written by [`serialize`]; a length that is not a whole number of values is an
/// error.
pub fn deserialize<'de, T: Packed, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    struct Values<T>(std::marker::PhantomData<T>);
    impl<T: Packed> Visitor<'_> for Values<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a byte string of {}-byte values", T::BYTES)
        }
        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<T>, E> {
            if !bytes.len().is_multiple_of(T::BYTES) {
                return Err(E::invalid_length(bytes.len(), &self));
            }
            Ok(bytes.chunks_exact(T::BYTES).map(T::unpack).collect())
        }
    }
    deserializer.deserialize_bytes(Values(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Tables {
        #[serde(with = "super")]
        narrow: Vec<u16>,
        #[serde(with = "super")]
        wide: Vec<u32>,
        #[serde(with = "super")]
        verdicts: Vec<Verdict>,
    }

    #[test]
    fn values_come_back_as_they_went() {
        let tables = Tables {
            narrow: vec![0, 1, 0x1234, u16::MAX],
            wide: vec![7, u32::MAX, 0x0102_0304],
            verdicts: vec![
                Verdict {
                    rule: 3,
                    rule_service: Verdict::FIRST_NAMED,
                },
                Verdict::DEFAULT,
            ],
        };
        let bytes = postcard::to_stdvec(&tables).unwrap();
        // Lengths and bytes: 1 + 8, 1 + 12, 1 + 16.
        assert_eq!(bytes.len(), 39);
        assert_eq!(postcard::from_bytes::<Tables>(&bytes).unwrap(), tables);
    }

    #[test]
    fn a_byte_string_cut_inside_a_value_is_refused() {
        // A 3-byte string where 2-byte values are expected.
        let bytes = [3, 1, 2, 3, 0, 0];
        assert!(postcard::from_bytes::<Tables>(&bytes).is_err());
    }
}
