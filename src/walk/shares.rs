//! How the reference walk's workers split the heap: which worker owns an address, and what they
//! share (inboxes, termination, abort). Used by the walk itself ([`super::full`]), which sends
//! candidates to their owners, and by the driver of the workers ([`super::workers`]).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use crate::memory::fasthash::AddrSet;

/// Walking threads of the reference walk (after the GC lists) memspy chooses by itself, at most (`--threads`
/// may ask for more).
pub const MAX_WORKERS: usize = 8;
/// Walking threads `--threads` may ask for, at most.
pub const MOST_WORKERS: usize = 64;

/// Candidates sent to another worker per batch.
pub(super) const SEND_BATCH: usize = 4096;
/// Entries of the direct-mapped filter of addresses already sent to another worker (a power of two).
pub(super) const SENT_FILTER: usize = 4096;

/// Which worker owns an address: 1 MiB stripes (the visited bitmap's blocks, a multiple of the read
/// cache's chunks), spread by a multiplicative hash. An object is validated, marked and reported only
/// by its owner, so each worker's visited bitmap and read cache hold only its own stripes.
#[inline]
pub fn owner(addr: u64, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (((addr >> 20).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize) % n
}

/// What the workers of one parallel walk share: an inbox per worker (batches of candidate addresses
/// it owns, found by the others), and termination: `outstanding` counts the active workers plus the
/// batches in inboxes, so it reaches 0 exactly when every worker is idle and nothing is in flight.
pub struct Shared {
    pub(super) inboxes: Vec<Mutex<Vec<Vec<u64>>>>,
    pub(super) idle: Vec<AtomicBool>,
    pub(super) outstanding: AtomicI64,
    /// A worker failed, panicked or was told to stop: everyone stops.
    pub(super) abort: AtomicBool,
    /// Native blocks and shared dict keys claimed by a worker: each is scanned by one worker only, so
    /// that every reference in them is found (and recorded) once, as by one thread.
    claimed: Mutex<AddrSet>,
}

impl Shared {
    pub fn new(n: usize) -> Self {
        Shared {
            inboxes: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            idle: (0..n).map(|_| AtomicBool::new(false)).collect(),
            outstanding: AtomicI64::new(n as i64),
            abort: AtomicBool::new(false),
            claimed: Mutex::new(AddrSet::default()),
        }
    }

    /// True for the first worker that claims the block or keys at `addr`.
    pub(super) fn claim(&self, addr: u64) -> bool {
        self.claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(addr)
    }

    pub(super) fn inbox(&self, i: usize) -> std::sync::MutexGuard<'_, Vec<Vec<u64>>> {
        // A poisoned inbox only means another worker panicked; the walk is stopping anyway.
        self.inboxes[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One worker's share of a parallel walk.
pub struct Part<'a> {
    pub(super) me: usize,
    pub(super) n: usize,
    pub(super) shared: &'a Shared,
    /// Candidates owned by each other worker, not sent yet.
    pub(super) outbox: Vec<Vec<u64>>,
    pub(super) sent: Box<[u64]>,
}

impl Part<'_> {
    pub(super) fn send(&mut self, to: usize) {
        if self.outbox[to].is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.outbox[to]);
        // Counted before it is visible, so that `outstanding` never reads 0 while it is in flight.
        self.shared.outstanding.fetch_add(1, Ordering::SeqCst);
        self.shared.inbox(to).push(batch);
    }

    pub(super) fn send_all(&mut self) {
        for to in 0..self.n {
            if to != self.me {
                self.send(to);
            }
        }
    }
}
