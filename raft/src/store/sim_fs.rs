//! A simulated disk for the crash tests: it keeps, per file, what was synced apart from what
//! was only written, and can lose power.
//!
//! Every operation counts; at the operation chosen as the crash point (and after it) every
//! call fails, as if the machine had stopped there. [`SimFs::after_power_loss`] then gives the
//! disk as a restarted machine finds it: for each file, the synced content plus a random
//! prefix of the operations issued since its last sync, the last of them possibly torn (an
//! append cut short) — the worst the contract in [`super::fs`] allows. `replace` and file
//! creation are durable when they return (the real implementation syncs the file and the
//! directory), so they are applied whole or, if the crash hit them, not at all.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::fs::{AppendFile, Fs};

/// A small deterministic generator (splitmix64), so a failing seed replays exactly.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Default, Clone)]
struct Inode {
    synced: Vec<u8>,
    current: Vec<u8>,
    unsynced: Vec<Op>,
}

#[derive(Debug, Default)]
struct Disk {
    paths: HashMap<PathBuf, usize>,
    inodes: Vec<Inode>,
    ops: u64,
    crash_at: Option<u64>,
    dead: bool,
    /// Bytes appended and later synced, for the test's report.
    synced_appends: u64,
    /// Truncations so far, for the test's report.
    truncations: u64,
}

impl Disk {
    fn tick(&mut self) -> io::Result<()> {
        self.ops += 1;
        if self.crash_at == Some(self.ops) {
            self.dead = true;
        }
        if self.dead {
            return Err(io::Error::other("simulated power loss"));
        }
        Ok(())
    }
}

/// The simulated disk; clones share it.
#[derive(Clone, Default)]
pub(super) struct SimFs(Arc<Mutex<Disk>>);

impl SimFs {
    /// A disk that loses power at its `crash_at`-th operation.
    pub(super) fn crashing_at(crash_at: u64) -> Self {
        SimFs(Arc::new(Mutex::new(Disk { crash_at: Some(crash_at), ..Disk::default() })))
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.0.lock().expect("sim disk lock")
    }

    /// Loses power now (if it has not already).
    pub(super) fn lose_power(&self) {
        self.disk().dead = true;
    }

    /// Loses power at the `n`-th operation from now.
    pub(super) fn crash_after(&self, n: u64) {
        let mut disk = self.disk();
        disk.crash_at = Some(disk.ops + n);
    }

    /// Truncations so far.
    pub(super) fn truncations(&self) -> u64 {
        self.disk().truncations
    }

    /// Bytes appended that a sync covered.
    pub(super) fn synced_appends(&self) -> u64 {
        self.disk().synced_appends
    }

    /// The disk as the machine finds it after the power loss: synced content plus a random
    /// prefix of the unsynced operations, the last possibly torn. The new disk does not crash
    /// until told to ([`SimFs::crash_after`]).
    pub(super) fn after_power_loss(&self, rng: &mut Rng) -> SimFs {
        let old = self.disk();
        let inodes = old
            .inodes
            .iter()
            .map(|inode| {
                let mut bytes = inode.synced.clone();
                let kept = rng.below(inode.unsynced.len() as u64 + 1) as usize;
                for (i, op) in inode.unsynced.iter().enumerate().take(kept + 1) {
                    match op {
                        Op::Append(b) if i == kept => bytes.extend_from_slice(&b[..rng.below(b.len() as u64) as usize]),
                        Op::Append(b) => bytes.extend_from_slice(b),
                        Op::SetLen(_) if i == kept => {}
                        Op::SetLen(len) => bytes.truncate(*len as usize),
                    }
                }
                Inode { synced: bytes.clone(), current: bytes, unsynced: Vec::new() }
            })
            .collect();
        SimFs(Arc::new(Mutex::new(Disk { paths: old.paths.clone(), inodes, ..Disk::default() })))
    }
}

struct SimFile {
    disk: SimFs,
    inode: usize,
}

impl Fs for SimFs {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let mut disk = self.disk();
        disk.tick()?;
        Ok(disk.paths.get(path).map(|&i| disk.inodes[i].current.clone()))
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn AppendFile>> {
        let mut disk = self.disk();
        disk.tick()?;
        let inode = match disk.paths.get(path) {
            Some(&i) => i,
            None => {
                disk.inodes.push(Inode::default());
                let i = disk.inodes.len() - 1;
                disk.paths.insert(path.to_path_buf(), i);
                i
            }
        };
        Ok(Arc::new(SimFile { disk: self.clone(), inode }))
    }

    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk();
        disk.tick()?;
        disk.inodes.push(Inode { synced: bytes.to_vec(), current: bytes.to_vec(), unsynced: Vec::new() });
        let i = disk.inodes.len() - 1;
        disk.paths.insert(path.to_path_buf(), i);
        Ok(())
    }

    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        self.disk().tick()
    }
}

impl AppendFile for SimFile {
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk.disk();
        disk.tick()?;
        let inode = &mut disk.inodes[self.inode];
        inode.current.extend_from_slice(bytes);
        inode.unsynced.push(Op::Append(bytes.to_vec()));
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut disk = self.disk.disk();
        disk.tick()?;
        let inode = &mut disk.inodes[self.inode];
        inode.current.truncate(len as usize);
        inode.unsynced.push(Op::SetLen(len));
        disk.truncations += 1;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut disk = self.disk.disk();
        disk.tick()?;
        let inode = &mut disk.inodes[self.inode];
        let appended: usize = inode.unsynced.iter().map(|op| if let Op::Append(b) = op { b.len() } else { 0 }).sum();
        inode.synced = inode.current.clone();
        inode.unsynced.clear();
        disk.synced_appends += appended as u64;
        Ok(())
    }
}
