//! The checks every walking loop makes, written once: a stop request (Ctrl-C), the target gone (set by
//! the watcher of [`super::read`]), the deadline (the pause budget or the timeout), and memspy's own
//! test hooks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Hidden knobs for memspy's own tests (not documented for users; they never change what is read):
/// `MEMSPY_TEST_WALK_DELAY_US=N` sleeps N µs per object walked, to catch a walk in the middle;
/// `MEMSPY_TEST_PANIC_IN_WALK=N` panics at the N-th object (default 1000) with the target paused — the
/// GC lists' objects first, then those the reference walk finds — from the K-th read of the process on
/// (`MEMSPY_TEST_PANIC_FROM_SNAPSHOT=K`, default 1).
#[derive(Clone, Copy, Debug, Default)]
pub struct TestHooks {
    pub delay: Option<Duration>,
    pub panic_at: Option<u64>,
    panic_from: u64,
}

/// Consistent reads taken by this process so far (for `MEMSPY_TEST_PANIC_FROM_SNAPSHOT`).
static READS: AtomicU64 = AtomicU64::new(0);

/// Counts one more consistent read of the process.
pub(crate) fn count_read() {
    READS.fetch_add(1, Ordering::SeqCst);
}

pub fn test_hooks() -> TestHooks {
    static HOOKS: OnceLock<TestHooks> = OnceLock::new();
    let mut hooks = *HOOKS.get_or_init(|| {
        let num = |name: &str| std::env::var(name).ok().map(|v| v.trim().parse::<u64>().unwrap_or(1000));
        TestHooks {
            delay: num("MEMSPY_TEST_WALK_DELAY_US").filter(|us| *us > 0).map(Duration::from_micros),
            panic_at: num("MEMSPY_TEST_PANIC_IN_WALK").map(|n| n.max(1)),
            panic_from: num("MEMSPY_TEST_PANIC_FROM_SNAPSHOT").unwrap_or(1),
        }
    });
    if READS.load(Ordering::SeqCst) < hooks.panic_from {
        hooks.panic_at = None;
    }
    hooks
}

/// How many objects pass between two looks at the stop flags and the clock.
const CHECK_EVERY: u64 = 64;

/// What every walking thread checks; cheap to clone (one per thread).
#[derive(Clone, Debug)]
pub struct Control {
    deadline: Option<Instant>,
    gone: Arc<AtomicBool>,
    /// Objects walked by every thread, counted only while a test asks for a panic.
    walked: Arc<AtomicU64>,
    hooks: TestHooks,
}

impl Control {
    pub fn new(deadline: Option<Instant>) -> Control {
        Control { deadline, gone: Arc::default(), walked: Arc::default(), hooks: test_hooks() }
    }

    /// Without a deadline, for reads of memory that cannot change (images, tests).
    pub fn unlimited() -> Control {
        Control::new(None)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn hooks(&self) -> &TestHooks {
        &self.hooks
    }

    /// The watcher's word that the target died.
    pub(crate) fn set_target_gone(&self) {
        self.gone.store(true, Ordering::SeqCst);
    }

    /// Stop conditions: a stop request, the target gone, the deadline passed (`what` names the walk in
    /// the timeout error).
    pub fn check(&self, what: &'static str) -> Result<()> {
        if crate::interrupt::requested() {
            return Err(Error::Interrupted);
        }
        if self.gone.load(Ordering::Relaxed) {
            return Err(Error::Corrupt("the target went away during the walk".into()));
        }
        if let Some(d) = self.deadline {
            if Instant::now() > d {
                return Err(Error::Timeout { seconds: 0.0, what: what.into() });
            }
        }
        Ok(())
    }

    /// Once per object; `n` counts this thread's objects. Every [`CHECK_EVERY`] objects (every object while
    /// a test slows the walk down): a stop request, the target gone, the deadline.
    #[inline]
    pub fn tick(&self, n: u64, what: &'static str) -> Result<()> {
        if !n.is_multiple_of(CHECK_EVERY) && self.hooks.delay.is_none() {
            return Ok(());
        }
        if let Some(d) = self.hooks.delay {
            std::thread::sleep(d);
        }
        self.check(what)
    }

    /// Once per object reported (GC lists first, then what the reference walk finds), by every thread:
    /// the test hook that panics at the N-th one.
    #[inline]
    pub fn reported(&self) {
        if let Some(at) = self.hooks.panic_at {
            let k = self.walked.fetch_add(1, Ordering::SeqCst) + 1;
            if k == at {
                panic!("MEMSPY_TEST_PANIC_IN_WALK: panicking at object {k} of the walk, as asked");
            }
        }
    }
}
