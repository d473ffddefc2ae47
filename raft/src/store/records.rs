//! The log file's record framing: `len: u32 LE | crc32(payload): u32 LE | payload`, the
//! payload a bincode [`Record`].
//!
//! A power loss can leave the file ending in a torn record (cut short) or, on a disk that
//! reorders writes within an unsynced range, in garbage. [`scan`] reads records from the start
//! and stops at the first one whose frame is short, whose checksum does not match, or whose
//! payload does not decode; everything from there on was never acknowledged (acknowledging
//! waits for the `fdatasync` that covers it), so the store cuts it off at open.

use openraft::{Entry, LogId};
use serde::{Deserialize, Serialize};

use crate::{codec, NodeId, TypeConfig};

const HEADER: usize = 8;

/// One record of the log file.
// Records live only while they are framed or scanned; boxing the entry would cost an
// allocation per append for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Record {
    /// A log entry. A later entry with the same or a lower index replaces it and everything
    /// after it (that is how a truncation that was followed by appends reads back).
    Entry(Entry<TypeConfig>),
    /// openraft's committed log id as of this point of the file. Written without a sync of its
    /// own: it becomes durable with the next group commit, and losing it only means the state
    /// machine is re-applied from an older point.
    Committed(Option<LogId<NodeId>>),
}

/// Frames `record` for appending.
pub(super) fn frame(record: &Record) -> std::io::Result<Vec<u8>> {
    let payload = codec::encode(record).map_err(std::io::Error::other)?;
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::other(format!("a log record of {} bytes is over 4 GiB", payload.len())))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// A record read back, with where it starts in the file.
#[derive(Debug)]
pub(super) struct Scanned {
    pub(super) offset: u64,
    pub(super) record: Record,
}

/// The valid records of a file and the length of the valid prefix.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) records: Vec<Scanned>,
    pub(super) valid_len: u64,
}

/// Reads records from the start of `bytes` up to the first torn or corrupt one.
pub(super) fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(record) = codec::decode::<Record>(payload) else { break };
        scan.records.push(Scanned { offset: at as u64, record });
        at += HEADER + len;
    }
    scan.valid_len = at as u64;
    scan
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;
    use openraft::EntryPayload;

    use super::*;

    fn entry(index: u64) -> Record {
        Record::Entry(Entry { log_id: log_id(1, 1, index), payload: EntryPayload::Blank })
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_scan() {
        let mut bytes = Vec::new();
        for i in 1..=3 {
            bytes.extend(frame(&entry(i)).unwrap());
        }
        let whole = bytes.len();
        assert_eq!(scan(&bytes).records.len(), 3);
        assert_eq!(scan(&bytes).valid_len, whole as u64);
        for cut in 0..whole {
            let s = scan(&bytes[..cut]);
            assert!(s.valid_len <= cut as u64);
            assert!(s.records.len() < 3, "cut at {cut} still read 3 records");
        }
        let second = scan(&bytes).records[1].offset as usize;
        bytes[second + HEADER] ^= 0xff;
        let s = scan(&bytes);
        assert_eq!((s.records.len(), s.valid_len), (1, second as u64));
    }
}
