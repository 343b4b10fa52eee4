//! Time, injectable: the controller reads monotonic time for cache expiry and backoff and wall
//! time for condition timestamps, and tests move both by hand.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
    fn wall(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to.
pub struct ManualClock {
    state: Mutex<(Instant, Timestamp)>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            state: Mutex::new((Instant::now(), Timestamp::now())),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 += by;
        state.1 = state
            .1
            .checked_add(jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(state.1);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }
    fn wall(&self) -> Timestamp {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// RFC 3339 with second precision, as metav1.Time serialises.
pub fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
