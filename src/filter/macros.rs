//! PocketBase's date macros (`tools/search/identifier_macros.go`), evaluated at event time.
//! Dates are text in PocketBase's `2006-01-02 15:04:05.000Z` format, which is what the
//! date columns hold and compare against.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Macro {
    Now,
    Yesterday,
    Tomorrow,
    TodayStart,
    TodayEnd,
    MonthStart,
    MonthEnd,
    YearStart,
    YearEnd,
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Weekday,
    Year,
}

impl Macro {
    pub(crate) fn from_name(name: &str) -> Option<Macro> {
        Some(match name {
            "@now" => Macro::Now,
            "@yesterday" => Macro::Yesterday,
            "@tomorrow" => Macro::Tomorrow,
            "@todayStart" => Macro::TodayStart,
            "@todayEnd" => Macro::TodayEnd,
            "@monthStart" => Macro::MonthStart,
            "@monthEnd" => Macro::MonthEnd,
            "@yearStart" => Macro::YearStart,
            "@yearEnd" => Macro::YearEnd,
            "@second" => Macro::Second,
            "@minute" => Macro::Minute,
            "@hour" => Macro::Hour,
            "@day" => Macro::Day,
            "@month" => Macro::Month,
            "@weekday" => Macro::Weekday,
            "@year" => Macro::Year,
            _ => return None,
        })
    }
}

/// A formatted date, kept on the stack so evaluating a macro allocates nothing.
#[derive(Clone, Copy)]
pub(crate) struct DateText([u8; 24]);

impl DateText {
    pub(crate) fn as_str(&self) -> &str {
        // only ASCII digits and separators are ever written
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// A civil UTC time with millisecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    y: i64,
    m: u32,
    d: u32,
    hh: u32,
    mm: u32,
    ss: u32,
    ms: u32,
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Civil {
    fn from_millis(ms: i64) -> Civil {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        Civil {
            y,
            m,
            d,
            hh: (rem / 3_600_000) as u32,
            mm: (rem / 60_000 % 60) as u32,
            ss: (rem / 1000 % 60) as u32,
            ms: (rem % 1000) as u32,
        }
    }

    /// Go's `time.Date` normalisation, then `AddDate(0, months, days)`.
    fn add_date(self, months: i64, days: i64) -> Civil {
        let total = self.y * 12 + (self.m as i64 - 1) + months;
        let (y, m) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
        let day = days_from_civil(y, m, 1) + self.d as i64 - 1 + days;
        let (y, m, d) = civil_from_days(day);
        Civil { y, m, d, ..self }
    }

    fn text(&self) -> DateText {
        let mut b = *b"0000-00-00 00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (0..width).rev() {
                b[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, self.y.clamp(0, 9999) as u64);
        put(5, 2, self.m as u64);
        put(8, 2, self.d as u64);
        put(11, 2, self.hh as u64);
        put(14, 2, self.mm as u64);
        put(17, 2, self.ss as u64);
        put(20, 3, self.ms as u64);
        DateText(b)
    }
}

/// Every macro's value at one instant, computed once per evaluation.
pub(crate) struct Macros {
    texts: [DateText; 9],
    ints: [i64; 7],
}

impl Macros {
    pub(crate) fn at(now: SystemTime) -> Macros {
        let ms = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        };
        let now = Civil::from_millis(ms);
        let day_start = Civil {
            hh: 0,
            mm: 0,
            ss: 0,
            ms: 0,
            ..now
        };
        let day_end = Civil {
            hh: 23,
            mm: 59,
            ss: 59,
            ms: 999,
            ..now
        };
        let month_start = Civil { d: 1, ..day_start };
        let month_end = Civil { d: 1, ..day_end }.add_date(1, -1);
        let year_start = Civil {
            m: 1,
            ..month_start
        };
        let year_end = Civil {
            m: 12,
            d: 31,
            ..day_end
        };
        let weekday = (days_from_civil(now.y, now.m, now.d) + 4).rem_euclid(7);
        Macros {
            texts: [
                now.text(),
                now.add_date(0, -1).text(),
                now.add_date(0, 1).text(),
                day_start.text(),
                day_end.text(),
                month_start.text(),
                month_end.text(),
                year_start.text(),
                year_end.text(),
            ],
            ints: [
                now.ss as i64,
                now.mm as i64,
                now.hh as i64,
                now.d as i64,
                now.m as i64,
                weekday,
                now.y,
            ],
        }
    }

    /// A date macro's text, or an integer macro's value.
    pub(crate) fn value(&self, m: Macro) -> Result<&str, i64> {
        use Macro::*;
        match m {
            Now => Ok(self.texts[0].as_str()),
            Yesterday => Ok(self.texts[1].as_str()),
            Tomorrow => Ok(self.texts[2].as_str()),
            TodayStart => Ok(self.texts[3].as_str()),
            TodayEnd => Ok(self.texts[4].as_str()),
            MonthStart => Ok(self.texts[5].as_str()),
            MonthEnd => Ok(self.texts[6].as_str()),
            YearStart => Ok(self.texts[7].as_str()),
            YearEnd => Ok(self.texts[8].as_str()),
            Second => Err(self.ints[0]),
            Minute => Err(self.ints[1]),
            Hour => Err(self.ints[2]),
            Day => Err(self.ints[3]),
            Month => Err(self.ints[4]),
            Weekday => Err(self.ints[5]),
            Year => Err(self.ints[6]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn macros_at_a_known_instant() {
        // 2024-02-29 13:14:15.678 UTC, a Thursday
        let t = UNIX_EPOCH + Duration::from_millis(1_709_212_455_678);
        let m = Macros::at(t);
        assert_eq!(m.value(Macro::Now), Ok("2024-02-29 13:14:15.678Z"));
        assert_eq!(m.value(Macro::Yesterday), Ok("2024-02-28 13:14:15.678Z"));
        assert_eq!(m.value(Macro::Tomorrow), Ok("2024-03-01 13:14:15.678Z"));
        assert_eq!(m.value(Macro::TodayStart), Ok("2024-02-29 00:00:00.000Z"));
        assert_eq!(m.value(Macro::TodayEnd), Ok("2024-02-29 23:59:59.999Z"));
        assert_eq!(m.value(Macro::MonthStart), Ok("2024-02-01 00:00:00.000Z"));
        assert_eq!(m.value(Macro::MonthEnd), Ok("2024-02-29 23:59:59.999Z"));
        assert_eq!(m.value(Macro::YearStart), Ok("2024-01-01 00:00:00.000Z"));
        assert_eq!(m.value(Macro::YearEnd), Ok("2024-12-31 23:59:59.999Z"));
        assert_eq!(m.value(Macro::Weekday), Err(4));
        assert_eq!(m.value(Macro::Hour), Err(13));
        assert_eq!(m.value(Macro::Year), Err(2024));
    }

    #[test]
    fn month_end_of_a_31_day_month() {
        // 2023-01-31 → AddDate(0, 1, -1) from Jan 1st gives Jan 31st
        let t = UNIX_EPOCH + Duration::from_secs(1_675_123_200); // 2023-01-31 00:00:00
        assert_eq!(
            Macros::at(t).value(Macro::MonthEnd),
            Ok("2023-01-31 23:59:59.999Z")
        );
    }
}
