//! The write-ahead log of the embedded store: what makes a group commit durable.
//!
//! Every group commit appends one record (the physical puts and deletes it applied, with the
//! version range it used) and waits for `fdatasync` before the store acknowledges it. The B-tree
//! commits behind it are not synced each time; a periodic checkpoint makes them durable and
//! clears the log. After a crash the store replays the records the B-tree does not hold yet.
//!
//! One sequential append per group writes a few kilobytes; a synced B-tree commit wrote every
//! page it dirtied (one random leaf per indexed field value of every document) each time.
//!
//! Record framing: `u32 LE payload length ‖ u32 LE CRC-32 of the payload ‖ payload`. A torn or
//! corrupt tail (a crash in the middle of an append) fails its length or checksum and ends the
//! log: that record was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::StoreError;

/// Bytes before the payload of each record: its length and checksum.
const FRAME_BYTES: usize = 8;

/// A record over this size is corruption, not a group commit (the writer caps a group well below).
const MAX_RECORD_BYTES: usize = 1 << 30;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

fn io_error(err: std::io::Error) -> StoreError {
    StoreError::Engine(format!("write-ahead log: {err}"))
}

/// One physical change to the store's single table (space byte included in the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalOp {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

/// What one group commit changed: its versions run from `first_version` up to (not including)
/// `next_version`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WalRecord {
    pub first_version: u64,
    pub next_version: u64,
    pub ops: Vec<WalOp>,
}

/// Builds the payload of one record while the writer applies a group, so the bytes are copied
/// once, as each op is applied.
#[derive(Debug, Default)]
pub struct RecordBuilder {
    buffer: Vec<u8>,
}

impl RecordBuilder {
    /// Starts a record; room for the frame is kept at the front so `Wal::append` writes one slice.
    pub fn start(&mut self, first_version: u64) {
        self.buffer.clear();
        self.buffer.extend_from_slice(&[0; FRAME_BYTES]);
        self.buffer.extend_from_slice(&first_version.to_be_bytes());
        // The next version is only known at the end of the group: `finish` fills it in.
        self.buffer.extend_from_slice(&[0; 8]);
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.buffer.push(OP_PUT);
        push_bytes(&mut self.buffer, key);
        push_bytes(&mut self.buffer, value);
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.buffer.push(OP_DELETE);
        push_bytes(&mut self.buffer, key);
    }

    /// Completes the frame; the returned bytes are what `Wal::append` writes.
    pub fn finish(&mut self, next_version: u64) -> Result<&[u8], StoreError> {
        let payload_len = self.buffer.len().saturating_sub(FRAME_BYTES);
        let len = u32::try_from(payload_len)
            .ok()
            .filter(|len| (*len as usize) <= MAX_RECORD_BYTES)
            .ok_or_else(|| StoreError::Engine("a group commit is too large to log".into()))?;
        if let Some(slot) = self.buffer.get_mut(FRAME_BYTES + 8..FRAME_BYTES + 16) {
            slot.copy_from_slice(&next_version.to_be_bytes());
        }
        let checksum = crc32fast::hash(self.buffer.get(FRAME_BYTES..).unwrap_or_default());
        if let Some(frame) = self.buffer.get_mut(..FRAME_BYTES) {
            frame[..4].copy_from_slice(&len.to_le_bytes());
            frame[4..].copy_from_slice(&checksum.to_le_bytes());
        }
        Ok(&self.buffer)
    }
}

fn push_bytes(buffer: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are bounded far below 4 GiB (1 MiB documents, 16 MiB groups).
    buffer.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buffer.extend_from_slice(bytes);
}

/// The log file, open for appending.
pub struct Wal {
    file: File,
    /// Bytes of valid records; an append that fails is cut back to this.
    len: u64,
}

impl Wal {
    /// Opens (or creates) the log and reads every intact record, oldest first. A torn tail is
    /// cut off, so later appends follow the last intact record.
    pub fn open(path: &Path) -> Result<(Wal, Vec<WalRecord>), StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error)?;
        let (records, valid) = decode_records(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                bytes = bytes.len() - valid,
                "the write-ahead log ends in a torn record (a crash during a commit that was \
                 never acknowledged); dropping it"
            );
            file.set_len(valid as u64).map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
        }
        file.seek(SeekFrom::Start(valid as u64)).map_err(io_error)?;
        let wal = Wal {
            file,
            len: valid as u64,
        };
        Ok((wal, records))
    }

    /// Bytes of records in the log.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Appends one framed record (from `RecordBuilder::finish`) and makes it durable. On failure
    /// the log is cut back to where it was, so a commit that was not acknowledged is not replayed
    /// either; if even that fails the log is unusable and says so.
    pub fn append(&mut self, framed: &[u8]) -> Result<(), WalAppendError> {
        let written = self
            .file
            .write_all(framed)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += framed.len() as u64;
                Ok(())
            }
            Err(err) => match self.cut_back() {
                Ok(()) => Err(WalAppendError::NotWritten(io_error(err))),
                Err(cut) => Err(WalAppendError::Unusable(io_error(std::io::Error::other(
                    format!("{err}; cutting the failed record off failed too: {cut}"),
                )))),
            },
        }
    }

    /// Forgets the last append (the commit it logged failed after all); see `append` on failure.
    pub fn undo_last_append(&mut self, framed_len: usize) -> Result<(), StoreError> {
        self.len = self.len.saturating_sub(framed_len as u64);
        self.cut_back().map_err(io_error)
    }

    /// Empties the log once everything in it is durable elsewhere (a checkpoint).
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.len = 0;
        self.cut_back().map_err(io_error)
    }

    fn cut_back(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.len)?;
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.sync_data()
    }
}

/// Why an append failed.
#[derive(Debug)]
pub enum WalAppendError {
    /// Nothing of the record stayed in the log; later appends may succeed.
    NotWritten(StoreError),
    /// The log may hold a partial record: no later commit may be acknowledged.
    Unusable(StoreError),
}

/// Decodes records up to the first torn or corrupt one; returns them and the bytes they span.
fn decode_records(bytes: &[u8]) -> (Vec<WalRecord>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, next)) = decode_record(bytes, at) {
        records.push(record);
        at = next;
    }
    (records, at)
}

fn decode_record(bytes: &[u8], at: usize) -> Option<(WalRecord, usize)> {
    let frame = bytes.get(at..at.checked_add(FRAME_BYTES)?)?;
    let len = u32::from_le_bytes(frame.get(..4)?.try_into().ok()?) as usize;
    let checksum = u32::from_le_bytes(frame.get(4..)?.try_into().ok()?);
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let start = at + FRAME_BYTES;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    if crc32fast::hash(payload) != checksum {
        return None;
    }
    let record = decode_payload(payload)?;
    Some((record, start + len))
}

fn decode_payload(payload: &[u8]) -> Option<WalRecord> {
    let mut reader = Reader { bytes: payload };
    let first_version = u64::from_be_bytes(reader.take(8)?.try_into().ok()?);
    let next_version = u64::from_be_bytes(reader.take(8)?.try_into().ok()?);
    let mut ops = Vec::new();
    while !reader.bytes.is_empty() {
        let op = match *reader.take(1)?.first()? {
            OP_PUT => {
                let key = reader.take_sized()?.to_vec();
                let value = reader.take_sized()?.to_vec();
                WalOp::Put { key, value }
            }
            OP_DELETE => WalOp::Delete {
                key: reader.take_sized()?.to_vec(),
            },
            _ => return None,
        };
        ops.push(op);
    }
    Some(WalRecord {
        first_version,
        next_version,
        ops,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.bytes.split_at_checked(n)?;
        self.bytes = rest;
        Some(head)
    }

    fn take_sized(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(first: u64, next: u64, ops: &[WalOp]) -> Vec<u8> {
        let mut builder = RecordBuilder::default();
        builder.start(first);
        for op in ops {
            match op {
                WalOp::Put { key, value } => builder.put(key, value),
                WalOp::Delete { key } => builder.delete(key),
            }
        }
        builder.finish(next).unwrap().to_vec()
    }

    fn put(key: &str, value: &str) -> WalOp {
        WalOp::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn appended_records_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearth.wal");
        let first = [
            put("da", "1"),
            WalOp::Delete {
                key: b"db".to_vec(),
            },
        ];
        let second = [put("dc", "")];
        {
            let (mut wal, records) = Wal::open(&path).unwrap();
            assert!(records.is_empty());
            wal.append(&record(1, 3, &first)).unwrap();
            wal.append(&record(3, 4, &second)).unwrap();
        }
        let (wal, records) = Wal::open(&path).unwrap();
        assert_eq!(
            records,
            [
                WalRecord {
                    first_version: 1,
                    next_version: 3,
                    ops: first.to_vec()
                },
                WalRecord {
                    first_version: 3,
                    next_version: 4,
                    ops: second.to_vec()
                },
            ]
        );
        assert_eq!(wal.bytes(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_log_and_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearth.wal");
        let kept = record(1, 2, &[put("da", "kept")]);
        let torn = record(2, 3, &[put("db", "torn")]);
        for tail in [torn[..torn.len() - 1].to_vec(), torn[..5].to_vec(), {
            let mut flipped = torn.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            flipped
        }] {
            std::fs::write(&path, [kept.clone(), tail].concat()).unwrap();
            let (mut wal, records) = Wal::open(&path).unwrap();
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].ops, [put("da", "kept")]);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), kept.len() as u64);
            // Appends continue right after the last intact record.
            wal.append(&record(2, 3, &[put("dc", "after")])).unwrap();
            drop(wal);
            let (_, records) = Wal::open(&path).unwrap();
            assert_eq!(records.len(), 2);
            assert_eq!(records[1].ops, [put("dc", "after")]);
        }
    }

    proptest::proptest! {
        /// Whatever a crash leaves after the last intact record, decoding keeps exactly the
        /// intact records and never panics.
        #[test]
        fn decoding_keeps_the_intact_records_before_any_tail(
            values in proptest::collection::vec(proptest::collection::vec(0u8.., 0..40), 0..6),
            tail in proptest::collection::vec(0u8.., 0..64),
        ) {
            let mut log = Vec::new();
            let mut expected = Vec::new();
            for (i, value) in values.iter().enumerate() {
                let op = WalOp::Put { key: vec![b'd', i as u8], value: value.clone() };
                log.extend(record(i as u64 + 1, i as u64 + 2, std::slice::from_ref(&op)));
                expected.push(op);
            }
            let intact = log.len();
            log.extend(&tail);
            let (records, valid) = decode_records(&log);
            // Random bytes pass a CRC-32 check about once in four billion tries.
            proptest::prop_assert!(valid >= intact);
            let ops: Vec<WalOp> = records.into_iter().take(values.len()).flat_map(|r| r.ops).collect();
            proptest::prop_assert_eq!(ops, expected);
            let _ = decode_records(&tail);
        }
    }

    #[test]
    fn clearing_and_undoing_shorten_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearth.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        let one = record(1, 2, &[put("da", "1")]);
        let two = record(2, 3, &[put("db", "2")]);
        wal.append(&one).unwrap();
        wal.append(&two).unwrap();
        wal.undo_last_append(two.len()).unwrap();
        assert_eq!(wal.bytes(), one.len() as u64);
        wal.clear().unwrap();
        assert_eq!(wal.bytes(), 0);
        wal.append(&two).unwrap();
        drop(wal);
        let (_, records) = Wal::open(&path).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].first_version, 2);
    }
}
