//! Property tests: bytes from the network never panic (or abort) the decoder. The Peer
//! service decodes whatever a peer (or an attacker with the cluster secret) sends. These
//! found that unbounded bincode decoding aborts on a forged length prefix; network bytes now
//! go through `decode_untrusted`.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use proptest::prelude::*;

use crate::codec::{decode_untrusted as decode, encode};
use crate::{Command, NodeId, Proposal, TypeConfig};

proptest! {
    #[test]
    fn random_bytes_never_panic_any_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Proposal>(&bytes);
        let _ = decode::<Command>(&bytes);
        let _ = decode::<AppendEntriesRequest<TypeConfig>>(&bytes);
        let _ = decode::<VoteRequest<NodeId>>(&bytes);
        let _ = decode::<InstallSnapshotRequest<TypeConfig>>(&bytes);
    }

    #[test]
    fn a_forged_huge_length_is_an_error_not_an_abort(tag in 0u8..8) {
        // Variant tag, then a varint length of 2^63 for the first String field.
        let mut bytes = vec![tag, 0xfd];
        bytes.extend_from_slice(&(1u64 << 63).to_le_bytes());
        prop_assert!(decode::<Command>(&bytes).is_err());
    }

    #[test]
    fn truncated_or_flipped_commands_never_panic(name in "[a-z]{1,10}", cut in 0usize..64, flip in any::<u8>()) {
        let cmd = Command::StopApp { name, at_ms: 7 };
        let mut bytes = encode(&cmd).unwrap();
        let n = bytes.len();
        if let Some(b) = bytes.get_mut(cut % n) {
            *b ^= flip;
        }
        bytes.truncate(n - cut % n);
        let _ = decode::<Command>(&bytes);
    }
}
