//! Maintenance windows and staged rollouts. Time is always a parameter (no clock here), so
//! the dispatcher and the tests can inject it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A maintenance window: opens at each occurrence of a cron schedule (minute hour
/// day-of-month month day-of-week, in `timezone`) and stays open for `duration`.
#[derive(Debug, Clone)]
pub struct Window {
    /// Name, referenced by rules.
    pub name: String,
    /// The schedule as written.
    pub schedule: String,
    /// How long each opening lasts.
    pub duration: Duration,
    /// IANA time zone the schedule is read in (daylight-saving changes included).
    pub timezone: Tz,
    cron: Cron,
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.schedule, self.duration, self.timezone)
            == (&other.name, &other.schedule, other.duration, other.timezone)
    }
}

impl Window {
    /// A window; `schedule` is a five-field cron pattern.
    pub fn new(
        name: &str,
        schedule: &str,
        duration: Duration,
        timezone: Tz,
    ) -> Result<Window, String> {
        let fields = schedule.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "schedule {schedule:?} must have 5 fields (minute hour day month weekday), has {fields}"
            ));
        }
        let cron: Cron = schedule
            .parse()
            .map_err(|e| format!("schedule {schedule:?}: {e}"))?;
        if duration.is_zero() || duration > Duration::from_secs(31 * 24 * 3600) {
            return Err("duration must be between 1 second and 31 days".into());
        }
        Ok(Window {
            name: name.to_owned(),
            schedule: schedule.to_owned(),
            duration,
            timezone,
            cron,
        })
    }

    /// Whether the window is open at `t`: some opening lies in `(t - duration, t]`.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        let Ok(d) = chrono::Duration::from_std(self.duration) else {
            return false;
        };
        let from = (t - d).with_timezone(&self.timezone);
        match self.cron.find_next_occurrence(&from, false) {
            Ok(o) => o.with_timezone(&Utc) <= t,
            Err(_) => false,
        }
    }

    /// The first instant at or after `t` when the window is open.
    pub fn next_open(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(t) {
            return Some(t);
        }
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.timezone), true)
            .ok()
            .map(|o| o.with_timezone(&Utc))
    }

    /// When the opening that contains `t` closes (None if closed at `t`).
    pub fn closes_at(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let d = chrono::Duration::from_std(self.duration).ok()?;
        let from = (t - d).with_timezone(&self.timezone);
        let o = self.cron.find_next_occurrence(&from, false).ok()?;
        let o = o.with_timezone(&Utc);
        (o <= t).then_some(o + d)
    }
}

/// A count or a percentage of the devices in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A number of devices.
    Count(usize),
    /// A percentage (1..=100) of all devices in the rollout.
    Percent(u8),
}

impl Size {
    /// Parses `"5"` or `"10%"`.
    pub fn parse(s: &str) -> Result<Size, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            match p.trim().parse::<u8>() {
                Ok(n) if (1..=100).contains(&n) => Ok(Size::Percent(n)),
                _ => Err(format!("{s:?}: a percentage must be 1% to 100%")),
            }
        } else {
            match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Size::Count(n)),
                _ => Err(format!(
                    "{s:?}: expected a positive count like 5 or a percentage like 10%"
                )),
            }
        }
    }

    /// The number of devices out of `total` (a percentage rounds up, so 1% of 50 is 1).
    pub fn of(self, total: usize) -> usize {
        match self {
            Size::Count(n) => n.min(total),
            Size::Percent(p) => (total * p as usize).div_ceil(100).min(total),
        }
    }
}

/// A staged rollout: cumulative batch sizes, a pause between batches, and a failure threshold
/// that halts the rollout and raises an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// Name, referenced by rules.
    pub name: String,
    /// Cumulative sizes: `["1", "10%", "100%"]` = one device, then up to 10%, then all.
    pub batches: Vec<Size>,
    /// Wait between batches.
    pub pause: Duration,
    /// Halt when this many (or this share of attempted) devices fail.
    pub failure_threshold: Size,
}

impl Rollout {
    /// Batch sizes for `total` devices: each batch adds the devices up to its cumulative
    /// size; the last batch always reaches every device.
    pub fn plan(&self, total: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut done = 0;
        for b in &self.batches {
            let upto = b.of(total).max(done);
            if upto > done {
                out.push(upto - done);
                done = upto;
            }
        }
        if done < total {
            out.push(total - done);
        }
        out
    }

    /// Whether `failed` failures out of `attempted` installs reach the threshold.
    pub fn halted(&self, failed: usize, attempted: usize) -> bool {
        match self.failure_threshold {
            Size::Count(n) => failed >= n,
            Size::Percent(p) => attempted > 0 && failed * 100 >= attempted * p as usize,
        }
    }
}

/// Parses `90s`, `10m`, `3h`, `2d` (one unit, no fractions).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 90s, 10m, 3h or 2d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn window_in_a_time_zone_with_daylight_saving() {
        // Saturdays and Sundays 02:00 Berlin time, for 3 hours.
        let w = Window::new(
            "weekend",
            "0 2 * * SAT,SUN",
            Duration::from_secs(3 * 3600),
            chrono_tz::Europe::Berlin,
        )
        .unwrap();
        // Saturday 2026-11-21 02:30 CET = 01:30 UTC: open.
        assert!(w.is_open(utc(2026, 11, 21, 1, 30)));
        // 04:59 CET = 03:59 UTC: open; 05:00 CET = 04:00 UTC: closed.
        assert!(w.is_open(utc(2026, 11, 21, 3, 59)));
        assert!(!w.is_open(utc(2026, 11, 21, 4, 0)));
        // Friday: closed; the next opening is Saturday 01:00 UTC.
        assert!(!w.is_open(utc(2026, 11, 20, 12, 0)));
        assert_eq!(
            w.next_open(utc(2026, 11, 20, 12, 0)),
            Some(utc(2026, 11, 21, 1, 0))
        );
        assert_eq!(
            w.closes_at(utc(2026, 11, 21, 2, 0)),
            Some(utc(2026, 11, 21, 4, 0))
        );
        // In summer (CEST, UTC+2) the same local time is 00:00 UTC.
        assert_eq!(
            w.next_open(utc(2026, 7, 3, 12, 0)),
            Some(utc(2026, 7, 4, 0, 0))
        );
    }

    #[test]
    fn sizes_and_plans() {
        assert_eq!(Size::parse("10%").unwrap().of(50), 5);
        assert_eq!(Size::parse("1%").unwrap().of(50), 1);
        assert!(
            Size::parse("0").is_err() && Size::parse("101%").is_err() && Size::parse("x").is_err()
        );
        let r = Rollout {
            name: "staged".into(),
            batches: vec![Size::Count(1), Size::Percent(10), Size::Percent(50)],
            pause: Duration::ZERO,
            failure_threshold: Size::Percent(20),
        };
        assert_eq!(r.plan(20), vec![1, 1, 8, 10]);
        assert_eq!(r.plan(1), vec![1]);
        assert_eq!(r.plan(0), Vec::<usize>::new());
        assert!(r.halted(2, 10) && !r.halted(1, 10));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("3h").unwrap(), Duration::from_secs(10800));
        assert!(parse_duration("3 hours").is_err() && parse_duration("h").is_err());
    }
}
