//! Service hours: the Pexip VMs are switched off outside them, so maxconf answers "closed"
//! instead of failing. Parses `SERVICE_HOURS`, `SERVICE_TIMEZONE`, `SERVICE_CLOSED_DATES` and
//! `SERVICE_OVERRIDE`, and answers "open now? next change?" through a [`Clock`].
//!
//! The rule is the one a wall clock in `SERVICE_TIMEZONE` gives: a moment is open when its
//! local date is not a closed date and its local time falls in an entry for that weekday (or in
//! the after-midnight part of the previous day's overnight entry). Daylight saving follows:
//! a local time skipped by a spring-forward jump never happens, one repeated by a fall-back
//! happens twice. The time zone data is compiled into the binary (jiff's bundled IANA
//! database), so the static musl build does not depend on the host's zoneinfo.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Instant;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};

use crate::config::ConfigError;

pub const DEFAULT_TIMEZONE: &str = "America/Vancouver";
/// Minutes in a day; an entry may end at `24:00`.
const DAY: u16 = 24 * 60;
/// How far ahead the next change is looked for (a long run of closed dates is still found).
const HORIZON_DAYS: i32 = 2 * 366;
/// Days of boundaries computed at a time while looking for the next change.
const CHUNK_DAYS: i32 = 14;
/// `Retry-After` when no opening is scheduled (an operator's `SERVICE_OVERRIDE=closed`).
pub const UNSCHEDULED_RETRY_AFTER_SECS: u64 = 900;

/// The IANA database compiled into the binary; never the host's copy, so every host (and
/// every test machine) computes the same hours.
fn tzdb() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// The moment "now" for service hours. Tests start it at a chosen instant (the hidden
/// `MAXCONF_TEST_CLOCK_START` setting); it then runs at real speed.
#[derive(Debug, Clone)]
pub struct Clock(Option<(Timestamp, Instant)>);

impl Clock {
    pub fn system() -> Self {
        Self(None)
    }

    pub fn starting_at(start: Timestamp) -> Self {
        Self(Some((start, Instant::now())))
    }

    pub fn now(&self) -> Timestamp {
        match self.0 {
            None => Timestamp::now(),
            Some((start, at)) => start.checked_add(at.elapsed()).unwrap_or(start),
        }
    }
}

/// `SERVICE_OVERRIDE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    Open,
    Closed,
}

/// One `SERVICE_HOURS` entry: weekdays (Monday first) and minutes of the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub days: [bool; 7],
    /// 0..1440.
    pub start: u16,
    /// 0..=1440, never equal to `start`; below `start` it runs past midnight.
    pub end: u16,
}

impl Entry {
    fn overnight(&self) -> bool {
        self.end < self.start
    }

    /// Open at minute `m` of a day whose weekday is `wd` (and whose previous one is `prev`)?
    fn covers(&self, wd: usize, prev: usize, m: u16) -> bool {
        let today_end = if self.overnight() { DAY } else { self.end };
        (self.days[wd] && self.start <= m && m < today_end)
            || (self.overnight() && self.days[prev] && m < self.end)
    }
}

/// Open or closed, and when that changes (`None`: not within two years, or never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open { closes_at: Option<Timestamp> },
    Closed { opens_at: Option<Timestamp> },
}

impl Status {
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open { .. })
    }

    pub fn next_change(&self) -> Option<Timestamp> {
        match *self {
            Self::Open { closes_at } => closes_at,
            Self::Closed { opens_at } => opens_at,
        }
    }
}

/// Whole seconds from `now` until `at`, rounded up and at least 1 (a `Retry-After`).
pub fn whole_seconds_until(now: Timestamp, at: Timestamp) -> u64 {
    let d = now.duration_until(at);
    let secs = d.as_secs() + i64::from(d.subsec_nanos() > 0);
    secs.max(1) as u64
}

/// The parsed settings and the clock they are read against.
#[derive(Debug, Clone)]
pub struct ServiceHours {
    entries: Vec<Entry>,
    /// `SERVICE_HOURS` was set (unset: every day, all day).
    scheduled: bool,
    tz_name: String,
    tz: TimeZone,
    closed_dates: BTreeSet<Date>,
    override_: Option<Override>,
    clock: Clock,
}

impl Default for ServiceHours {
    /// Always open.
    fn default() -> Self {
        Self::new(None, DEFAULT_TIMEZONE, "", None).expect("the defaults are valid")
    }
}

fn err(setting: &str, rule: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        rule: rule.into(),
    }
}

impl ServiceHours {
    /// Reads the four settings (and the hidden test clock) through `get`, which treats empty
    /// values as unset.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let tz = get("SERVICE_TIMEZONE").unwrap_or_else(|| DEFAULT_TIMEZONE.to_owned());
        let mut hours = Self::new(
            get("SERVICE_HOURS").as_deref(),
            tz.trim(),
            get("SERVICE_CLOSED_DATES").as_deref().unwrap_or(""),
            get("SERVICE_OVERRIDE").as_deref(),
        )?;
        if let Some(start) = get("MAXCONF_TEST_CLOCK_START") {
            let start = start.trim().parse::<Timestamp>().map_err(|_| {
                err(
                    "MAXCONF_TEST_CLOCK_START",
                    "must be an RFC 3339 instant (tests only)",
                )
            })?;
            hours.clock = Clock::starting_at(start);
        }
        Ok(hours)
    }

    pub fn new(
        hours: Option<&str>,
        timezone: &str,
        closed_dates: &str,
        override_: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let entries = match hours {
            Some(text) => parse_hours(text).map_err(|rule| err("SERVICE_HOURS", rule))?,
            None => vec![Entry {
                days: [true; 7],
                start: 0,
                end: DAY,
            }],
        };
        let tz = tzdb().get(timezone).map_err(|_| {
            err(
                "SERVICE_TIMEZONE",
                "must be an IANA time zone name, e.g. America/Vancouver",
            )
        })?;
        let closed_dates =
            parse_dates(closed_dates).map_err(|rule| err("SERVICE_CLOSED_DATES", rule))?;
        let override_ = match override_.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None => None,
            Some("open") => Some(Override::Open),
            Some("closed") => Some(Override::Closed),
            Some(_) => return Err(err("SERVICE_OVERRIDE", "must be `open` or `closed`")),
        };
        Ok(Self {
            entries,
            scheduled: hours.is_some(),
            tz_name: timezone.to_owned(),
            tz,
            closed_dates,
            override_,
            clock: Clock::system(),
        })
    }

    /// The same hours read against another clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn timezone(&self) -> &str {
        &self.tz_name
    }

    /// Can the state ever change while the process runs? (No override, and some hours or
    /// closed dates.) The opening watcher has nothing to do otherwise.
    pub fn changes(&self) -> bool {
        self.override_.is_none() && (self.scheduled || !self.closed_dates.is_empty())
    }

    /// Any of the service-hours settings set?
    pub fn configured(&self) -> bool {
        self.scheduled || !self.closed_dates.is_empty() || self.override_.is_some()
    }

    pub fn status(&self) -> Status {
        self.status_at(self.clock.now())
    }

    pub fn status_at(&self, t: Timestamp) -> Status {
        match self.override_ {
            Some(Override::Open) => Status::Open { closes_at: None },
            Some(Override::Closed) => Status::Closed { opens_at: None },
            None if !self.changes() => Status::Open { closes_at: None },
            None => {
                let next = self.next_change(t);
                if self.open_at(t) {
                    Status::Open { closes_at: next }
                } else {
                    Status::Closed { opens_at: next }
                }
            }
        }
    }

    /// Open at `t`, override included (cheaper than [`Self::status_at`]: no next change).
    pub fn is_open_at(&self, t: Timestamp) -> bool {
        match self.override_ {
            Some(o) => o == Override::Open,
            None => !self.changes() || self.open_at(t),
        }
    }

    /// The schedule alone (no override): open at `t` as the local wall clock reads?
    pub fn open_at(&self, t: Timestamp) -> bool {
        let local = self.tz.to_datetime(t);
        let date = local.date();
        if self.closed_dates.contains(&date) {
            return false;
        }
        let wd = date.weekday().to_monday_zero_offset() as usize;
        let prev = (wd + 6) % 7;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.entries.iter().any(|e| e.covers(wd, prev, minute))
    }

    /// The first instant after `t` where [`Self::open_at`] differs from its value at `t`.
    /// The state only changes where the local time reaches a boundary (an entry's start or
    /// end, or midnight for closed dates) or at a time-zone transition, so those instants are
    /// the only candidates.
    pub fn next_change(&self, t: Timestamp) -> Option<Timestamp> {
        let now_open = self.open_at(t);
        let mut boundaries: Vec<u16> = self
            .entries
            .iter()
            .flat_map(|e| [e.start, e.end % DAY])
            .chain([0])
            .collect();
        boundaries.sort_unstable();
        boundaries.dedup();
        let first = self.tz.to_datetime(t).date().yesterday().ok()?;
        let mut after = t;
        for chunk in 0..HORIZON_DAYS / CHUNK_DAYS {
            let mut candidates = Vec::new();
            for day in 0..CHUNK_DAYS {
                let Ok(date) = first.checked_add(jiff::Span::new().days(chunk * CHUNK_DAYS + day))
                else {
                    return None;
                };
                for &b in &boundaries {
                    let dt = date.at((b / 60) as i8, (b % 60) as i8, 0, 0);
                    match self.tz.to_ambiguous_timestamp(dt).offset() {
                        AmbiguousOffset::Unambiguous { offset } => {
                            candidates.extend(offset.to_timestamp(dt).ok())
                        }
                        // Skipped local time: the transition itself is a candidate below.
                        AmbiguousOffset::Gap { .. } => {}
                        AmbiguousOffset::Fold { before, after } => {
                            candidates.extend(before.to_timestamp(dt).ok());
                            candidates.extend(after.to_timestamp(dt).ok());
                        }
                    }
                }
            }
            let &chunk_end = candidates.iter().max()?;
            candidates.extend(
                self.tz
                    .following(after)
                    .map(|tr| tr.timestamp())
                    .take_while(|ts| *ts <= chunk_end),
            );
            candidates.retain(|c| *c > after && *c <= chunk_end);
            candidates.sort_unstable();
            candidates.dedup();
            if let Some(change) = candidates
                .into_iter()
                .find(|c| self.open_at(*c) != now_open)
            {
                return Some(change);
            }
            after = chunk_end;
        }
        None
    }
}

/// `Mon-Fri 07:30-17:00; Sat 09:00-12:00`: entries separated by `;`, each a comma list of days
/// or day ranges (a range may wrap, `Fri-Mon`) and one `HH:MM-HH:MM` range.
pub fn parse_hours(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for raw in text.split(';') {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let (days, range) = raw
            .rsplit_once(char::is_whitespace)
            .ok_or_else(|| format!("`{}`: expected days then HH:MM-HH:MM", bounded(raw)))?;
        let days = parse_days(days.trim()).map_err(|e| format!("`{}`: {e}", bounded(raw)))?;
        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| format!("`{}`: expected HH:MM-HH:MM", bounded(raw)))?;
        let start = parse_time(start).map_err(|e| format!("`{}`: {e}", bounded(raw)))?;
        let end = parse_time(end).map_err(|e| format!("`{}`: {e}", bounded(raw)))?;
        if start == DAY {
            return Err(format!("`{}`: a start cannot be 24:00", bounded(raw)));
        }
        if start == end {
            return Err(format!(
                "`{}`: start and end are the same time",
                bounded(raw)
            ));
        }
        entries.push(Entry { days, start, end });
    }
    if entries.is_empty() {
        return Err("must list at least one entry, e.g. `Mon-Fri 07:30-17:00`".into());
    }
    Ok(entries)
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_day(name: &str) -> Result<usize, String> {
    let lower = name.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| *d == lower)
        .ok_or_else(|| format!("`{}` is not a day (Mon … Sun)", bounded(name.trim())))
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for item in text.split(',') {
        match item.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (parse_day(from)?, parse_day(to)?);
                let mut d = from;
                loop {
                    days[d] = true;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[parse_day(item)?] = true,
        }
    }
    Ok(days)
}

/// `HH:MM`, 24-hour, two digits each; `24:00` is the end of the day.
fn parse_time(text: &str) -> Result<u16, String> {
    let t = text.trim();
    let b = t.as_bytes();
    let ok = b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit());
    if !ok {
        return Err(format!("`{}` is not a time HH:MM", bounded(t)));
    }
    let h = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
    let m = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("`{t}` is not a time from 00:00 to 24:00"));
    }
    Ok(h * 60 + m)
}

/// Comma-separated `YYYY-MM-DD`.
pub fn parse_dates(text: &str) -> Result<BTreeSet<Date>, String> {
    let mut dates = BTreeSet::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let b = item.as_bytes();
        let shape = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        let date = shape
            .then(|| {
                let n = |r: std::ops::Range<usize>| item[r].parse::<i16>().ok();
                Date::new(n(0..4)?, n(5..7)? as i8, n(8..10)? as i8).ok()
            })
            .flatten()
            .ok_or_else(|| format!("`{}` is not a date YYYY-MM-DD", bounded(item)))?;
        dates.insert(date);
    }
    Ok(dates)
}

/// A piece of a setting, short enough for a one-line error.
fn bounded(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hours(text: &str) -> ServiceHours {
        ServiceHours::new(Some(text), DEFAULT_TIMEZONE, "", None).unwrap()
    }

    #[test]
    fn the_issue_example_parses() {
        let e = parse_hours("Mon-Fri 07:30-17:00; Sat 09:00-12:00").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].days, [true, true, true, true, true, false, false]);
        assert_eq!((e[0].start, e[0].end), (450, 1020));
        assert_eq!(e[1].days, [false, false, false, false, false, true, false]);
        let wrap = parse_hours("fri-MON 22:00-06:00").unwrap();
        assert_eq!(wrap[0].days, [true, false, false, false, true, true, true]);
        assert_eq!(parse_hours("Sun 00:00-24:00").unwrap()[0].end, DAY);
    }

    #[test]
    fn bad_hours_are_refused_with_the_reason() {
        for bad in [
            "",
            " ; ",
            "Mon",
            "07:30-17:00",
            "Mo 07:30-17:00",
            "Mon 7:30-17:00",
            "Mon 07:30-17:60",
            "Mon 07:30-24:01",
            "Mon 24:00-01:00",
            "Mon 08:00-08:00",
            "Mon 08:00",
            "Mon-Funday 08:00-09:00",
        ] {
            assert!(parse_hours(bad).is_err(), "{bad:?} accepted");
        }
        let e = ServiceHours::new(Some("Mon 25:00-26:00"), DEFAULT_TIMEZONE, "", None).unwrap_err();
        assert_eq!(e.setting, "SERVICE_HOURS");
        for (tz, dates, ov, setting) in [
            ("Mars/Olympus", "", None, "SERVICE_TIMEZONE"),
            (DEFAULT_TIMEZONE, "2026-02-30", None, "SERVICE_CLOSED_DATES"),
            (
                DEFAULT_TIMEZONE,
                "2026-12-25,26-12-2026",
                None,
                "SERVICE_CLOSED_DATES",
            ),
            (DEFAULT_TIMEZONE, "", Some("maybe"), "SERVICE_OVERRIDE"),
        ] {
            let e = ServiceHours::new(None, tz, dates, ov).unwrap_err();
            assert_eq!(e.setting, setting);
        }
    }

    #[test]
    fn unset_means_always_open() {
        let s = ServiceHours::default();
        assert!(!s.changes());
        assert_eq!(s.status(), Status::Open { closes_at: None });
    }

    #[test]
    fn weekday_hours_in_vancouver() {
        let s = hours("Mon-Fri 07:30-17:00; Sat 09:00-12:00");
        // Tuesday 2026-06-02 03:00 PDT = 10:00Z: opens 07:30 PDT = 14:30Z.
        assert_eq!(
            s.status_at(ts("2026-06-02T10:00:00Z")),
            Status::Closed {
                opens_at: Some(ts("2026-06-02T14:30:00Z"))
            }
        );
        assert_eq!(
            s.status_at(ts("2026-06-02T14:30:00Z")),
            Status::Open {
                closes_at: Some(ts("2026-06-03T00:00:00Z"))
            }
        );
        // Saturday 13:00 local: next is Monday 07:30.
        assert_eq!(
            s.status_at(ts("2026-06-06T20:00:00Z")).next_change(),
            Some(ts("2026-06-08T14:30:00Z"))
        );
    }

    #[test]
    fn the_bundled_database_is_used() {
        // tzdata 2026f (bundled) keeps British Columbia on UTC-7 after 2026-11-01, where older
        // host copies fall back to PST: the answer must not depend on the host.
        let s = hours("Mon-Fri 07:30-17:00");
        assert_eq!(
            s.status_at(ts("2026-12-01T10:00:00Z")).next_change(),
            Some(ts("2026-12-01T14:30:00Z"))
        );
    }

    #[test]
    fn overnight_entries_and_closed_dates() {
        let s = ServiceHours::new(
            Some("Fri 22:00-02:00"),
            DEFAULT_TIMEZONE,
            "2026-06-06",
            None,
        )
        .unwrap();
        // Friday 2026-06-05 23:00 PDT; Saturday is closed all day, so it shuts at midnight.
        assert_eq!(
            s.status_at(ts("2026-06-06T06:00:00Z")),
            Status::Open {
                closes_at: Some(ts("2026-06-06T07:00:00Z"))
            }
        );
        // The following Friday runs to 02:00 Saturday.
        assert_eq!(
            s.status_at(ts("2026-06-13T06:00:00Z")),
            Status::Open {
                closes_at: Some(ts("2026-06-13T09:00:00Z"))
            }
        );
    }

    #[test]
    fn daylight_saving_days_are_shorter_and_longer() {
        let s = hours("Sun 00:00-06:00");
        // 2026-03-08 in Vancouver: 00:00 PST (08:00Z) to 06:00 PDT (13:00Z), five hours.
        assert_eq!(
            s.status_at(ts("2026-03-08T08:00:00Z")),
            Status::Open {
                closes_at: Some(ts("2026-03-08T13:00:00Z"))
            }
        );
        // 2026-11-01 in Toronto: 00:00 EDT (04:00Z) to 06:00 EST (11:00Z), seven hours.
        let toronto = |text| ServiceHours::new(Some(text), "America/Toronto", "", None).unwrap();
        assert_eq!(
            toronto("Sun 00:00-06:00").status_at(ts("2026-11-01T04:00:00Z")),
            Status::Open {
                closes_at: Some(ts("2026-11-01T11:00:00Z"))
            }
        );
        // A start in the skipped hour opens at the jump (03:00 PDT = 10:00Z).
        let gap = hours("Sun 02:30-04:00");
        assert_eq!(
            gap.status_at(ts("2026-03-08T09:00:00Z")),
            Status::Closed {
                opens_at: Some(ts("2026-03-08T10:00:00Z"))
            }
        );
        // The repeated hour is open twice: 01:15-01:45 EDT, then again in EST.
        let fold = toronto("Sun 01:15-01:45");
        assert_eq!(
            fold.status_at(ts("2026-11-01T05:00:00Z")).next_change(),
            Some(ts("2026-11-01T05:15:00Z"))
        );
        assert_eq!(
            fold.status_at(ts("2026-11-01T05:45:00Z")),
            Status::Closed {
                opens_at: Some(ts("2026-11-01T06:15:00Z"))
            }
        );
    }

    #[test]
    fn overrides_win() {
        let s =
            ServiceHours::new(Some("Mon 09:00-10:00"), DEFAULT_TIMEZONE, "", Some("open")).unwrap();
        assert_eq!(s.status(), Status::Open { closes_at: None });
        let s = ServiceHours::new(None, DEFAULT_TIMEZONE, "", Some("CLOSED")).unwrap();
        assert_eq!(s.status(), Status::Closed { opens_at: None });
        assert!(!s.changes());
    }

    #[test]
    fn retry_after_rounds_up() {
        let now = ts("2026-12-01T11:00:00.2Z");
        assert_eq!(whole_seconds_until(now, ts("2026-12-01T11:00:10Z")), 10);
        assert_eq!(whole_seconds_until(now, now), 1);
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (any::<[bool; 7]>(), 0u16..DAY, 0u16..=DAY)
            .prop_filter("a day and distinct times", |(d, s, e)| {
                d.iter().any(|x| *x) && s != e
            })
            .prop_map(|(days, start, end)| Entry { days, start, end })
    }

    /// Writes entries in one of the accepted spellings.
    fn render(entries: &[Entry], spaces: &str, upper: bool) -> String {
        let hhmm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        entries
            .iter()
            .map(|e| {
                let days: Vec<String> = (0..7)
                    .filter(|d| e.days[*d])
                    .map(|d| {
                        let n = DAY_NAMES[d];
                        if upper {
                            n.to_uppercase()
                        } else {
                            n.to_owned()
                        }
                    })
                    .collect();
                format!(
                    "{}{spaces} {}-{}",
                    days.join(","),
                    hhmm(e.start),
                    hhmm(e.end)
                )
            })
            .collect::<Vec<_>>()
            .join(&format!("{spaces};{spaces}"))
    }

    /// Instants around 2026's transitions in Vancouver, Toronto and Berlin, and anywhere in
    /// 2026-2027.
    fn instant() -> impl Strategy<Value = Timestamp> {
        let around = |center: &'static str| {
            (-2 * 86_400i64..2 * 86_400).prop_map(move |d| {
                ts(center)
                    .checked_add(jiff::SignedDuration::from_secs(d))
                    .unwrap()
            })
        };
        prop_oneof![
            around("2026-03-08T10:00:00Z"),
            around("2026-11-01T06:00:00Z"),
            around("2026-03-29T01:00:00Z"),
            around("2026-10-25T01:00:00Z"),
            (1_767_225_600i64..1_830_297_600).prop_map(|s| Timestamp::from_second(s).unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn rendered_hours_parse_back(
            entries in proptest::collection::vec(entry(), 1..5),
            spaces in "[ \t]{0,2}",
            upper: bool,
        ) {
            let text = render(&entries, &spaces, upper);
            prop_assert_eq!(parse_hours(&text).unwrap(), entries);
        }

        #[test]
        fn any_text_parses_or_fails_cleanly(text in "\\PC{0,60}") {
            if let Err(rule) = parse_hours(&text) {
                prop_assert!(!rule.contains('\n'));
            }
        }

        #[test]
        fn the_next_change_is_a_change_and_nothing_changes_before_it(
            entries in proptest::collection::vec(entry(), 1..4),
            zone in 0usize..3,
            closed in proptest::collection::vec(0i64..60, 0..3),
            t in instant(),
            probes in proptest::collection::vec(0.0f64..1.0, 8),
        ) {
            let tz = [DEFAULT_TIMEZONE, "Europe/Berlin", "America/Toronto"][zone];
            let first = Date::new(2026, 2, 20).unwrap();
            let dates: Vec<String> = closed
                .iter()
                .map(|d| first.checked_add(jiff::Span::new().days(*d)).unwrap().to_string())
                .collect();
            let mut s = ServiceHours::new(Some("Mon 00:00-00:01"), tz, &dates.join(","), None)
                .unwrap();
            s.entries = entries;
            let open = s.open_at(t);
            let status = s.status_at(t);
            prop_assert_eq!(status.is_open(), open);
            prop_assert_eq!(s.is_open_at(t), open);
            let Some(change) = status.next_change() else {
                // Only a week covered all day long never changes.
                for h in 0..24 * 15 {
                    let probe = t.checked_add(jiff::SignedDuration::from_hours(h)).unwrap();
                    prop_assert_eq!(s.open_at(probe), open);
                }
                return Ok(());
            };
            prop_assert!(change > t);
            prop_assert_ne!(s.open_at(change), open);
            // Just before the change, and anywhere between: unchanged.
            let before = change.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap();
            prop_assert!(before <= t || s.open_at(before) == open);
            let span = t.duration_until(change).as_secs_f64();
            for p in probes {
                let probe = t.checked_add(jiff::SignedDuration::from_secs_f64(span * p)).unwrap();
                prop_assert_eq!(s.open_at(probe), open, "at {} (change {})", probe, change);
            }
        }

        #[test]
        fn open_moments_read_as_open_on_the_local_wall_clock(t in instant()) {
            // 07:30-17:00 never touches a transition hour: open exactly when the local clock
            // says a weekday between 07:30 and 17:00, in summer and in winter time.
            let s = hours("Mon-Fri 07:30-17:00");
            let local = tzdb().get(DEFAULT_TIMEZONE).unwrap().to_datetime(t);
            let m = local.hour() as u16 * 60 + local.minute() as u16;
            let weekday = local.weekday().to_monday_zero_offset() < 5;
            prop_assert_eq!(s.open_at(t), weekday && (450..1020).contains(&m));
            if let Some(change) = s.status_at(t).next_change() {
                let at = tzdb().get(DEFAULT_TIMEZONE).unwrap().to_datetime(change);
                prop_assert_eq!(at.second(), 0);
                prop_assert!(matches!((at.hour(), at.minute()), (7, 30) | (17, 0)), "{}", at);
            }
        }
    }
}
