//! "Now", in one place. Wall-clock time on purpose: CloudTrail times and credential
//! expirations are wall-clock times, and a laptop that slept overnight must see its
//! credentials as expired even though the monotonic clock barely moved.
//!
//! Commands that decide from a date (shrink's usage window, an announced apply date) take a
//! [`Clock`], so a test or an operator (`--now`) can fix the moment without touching the
//! system time.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::time::EventTime;

/// Milliseconds since the Unix epoch now; 0 if the system clock is before 1970.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Now as an [`EventTime`].
pub fn now() -> EventTime {
    EventTime(now_millis())
}

/// Whole seconds since the Unix epoch now.
pub fn now_seconds() -> i64 {
    now_millis() / 1000
}

/// Nanoseconds since the Unix epoch now (file modification times are compared in these).
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Where a command reads the time from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// A fixed moment (`--now`, tests).
    Fixed(EventTime),
}

impl Clock {
    /// The system clock unless `fixed` is given.
    pub fn fixed_or_system(fixed: Option<EventTime>) -> Clock {
        fixed.map_or(Clock::System, Clock::Fixed)
    }

    pub fn now(self) -> EventTime {
        match self {
            Clock::System => now(),
            Clock::Fixed(t) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_tell_the_time() {
        // 2020-09-13T12:26:40Z: any machine running this is later.
        assert!(now_millis() > 1_600_000_000_000);
        assert_eq!(now_seconds() / 1000, now_millis() / 1_000_000);
        let t = EventTime(42);
        assert_eq!(Clock::fixed_or_system(Some(t)).now(), t);
        assert!(Clock::fixed_or_system(None).now() > t);
    }
}
