//! One binary encoding for everything the Raft layer writes to disk or sends to a peer:
//! bincode 2 over serde. bincode cannot encode flattened, untagged or internally tagged
//! serde types, so every replicated type is a plain struct or externally tagged enum.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The encoding failed or the bytes are not a value of the expected type.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a value.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// How many bytes [`encode`] would make of `value`, without allocating them.
pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config())?;
    Ok(size.bytes_written)
}

/// Most bytes a value decoded from the network may claim. bincode allocates what a length
/// prefix announces before reading it, so without a bound a few crafted bytes from a peer
/// could ask for exabytes and abort the node (found by the property tests). Peer messages are
/// at most 64 MiB on the wire (the gRPC limit), so nothing legitimate needs more.
pub const UNTRUSTED_LIMIT: usize = 64 << 20;

/// Decodes a value read from our own disk; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())?;
    check_consumed(read, bytes.len())?;
    Ok(value)
}

/// Most bytes an installed snapshot may claim: it comes from the authenticated leader, and a
/// catalog may legitimately be larger than one RPC, but a forged length must not abort us.
pub const SNAPSHOT_LIMIT: usize = 4 << 30;

/// Decodes a snapshot received from the leader, with allocations bounded by [`SNAPSHOT_LIMIT`].
pub fn decode_snapshot<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config().with_limit::<SNAPSHOT_LIMIT>())?;
    check_consumed(read, bytes.len())?;
    Ok(value)
}

/// Decodes a value that came from another process (a peer's RPC), with allocations bounded
/// by [`UNTRUSTED_LIMIT`]; trailing bytes are an error.
pub fn decode_untrusted<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config().with_limit::<UNTRUSTED_LIMIT>())?;
    check_consumed(read, bytes.len())?;
    Ok(value)
}

fn check_consumed(read: usize, len: usize) -> Result<(), CodecError> {
    if read != len {
        return Err(CodecError::Decode(bincode::error::DecodeError::OtherString(format!(
            "{} trailing bytes",
            len - read
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn encoded_len_is_the_length_encode_makes() {
        let value = (vec!["a".to_string(); 100], 7u64, Some(-3i64));
        assert_eq!(super::encoded_len(&value).unwrap(), super::encode(&value).unwrap().len());
    }
}
