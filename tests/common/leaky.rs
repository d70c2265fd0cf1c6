//! fixtures/leaky.py, which leaks exactly PER_TICK `Leaked` objects per tick and counts its ticks in the
//! heap (one `Tick` object per tick). Ticks run while the GC says a collection is running, which memspy
//! waits out, so every snapshot sees whole ticks and the checks on it are exact.

use std::fs;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::{describe_exit, get_u64, tail, Fixture, Interpreter, FIXTURE_TIMEOUT};

pub const LEAKY_FIXTURE: &str = "leaky.py";
pub const LEAKED: &str = "__main__.Leaked";
pub const TICK: &str = "__main__.Tick";
pub const CHURN: &str = "__main__.Churn";

/// A running leaky.py and the figures it recorded about its ticks.
pub struct Leaky {
    pub fixture: Fixture,
    pub per_tick: u64,
    pub churn_even: u64,
    pub churn_odd: u64,
}

impl Leaky {
    pub fn start(interp: &Interpreter) -> Result<Leaky, String> {
        let mut fixture = Fixture::spawn(interp, LEAKY_FIXTURE, &[])?;
        let state = fixture.wait_for_truth(FIXTURE_TIMEOUT)?;
        Ok(Leaky {
            per_tick: get_u64(&state, "per_tick")?,
            churn_even: get_u64(&state, "churn_even")?,
            churn_odd: get_u64(&state, "churn_odd")?,
            fixture,
        })
    }

    pub fn pid(&self) -> String {
        self.fixture.pid.to_string()
    }

    /// The fixture's own tick counter, from its state file.
    pub fn ticks(&self) -> Result<u64, String> {
        let text = fs::read_to_string(&self.fixture.truth_path).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        get_u64(&v, "ticks")
    }

    pub fn churn_after(&self, ticks: u64) -> u64 {
        if ticks.is_multiple_of(2) {
            self.churn_even
        } else {
            self.churn_odd
        }
    }

    /// Alive and not left stopped by memspy.
    pub fn check_running(&mut self, errors: &mut Vec<String>) {
        if let Some(s) = self.fixture.exited() {
            errors.push(format!(
                "fixture died: {}; stderr: {}",
                describe_exit(s),
                tail(&self.fixture.stderr_text(), 500)
            ));
        } else {
            thread::sleep(Duration::from_millis(20));
            if matches!(self.fixture.proc_state(), Some('T') | Some('t')) {
                errors.push("memspy left the fixture stopped".into());
            }
        }
    }
}
