//! Time as meshlens handles it: stored as Unix milliseconds, served as ISO 8601 UTC
//! (`2026-11-25T18:00:00.123Z`), accepted as ISO or as Unix seconds or milliseconds; and
//! durations as operators write them (`30s`, `5m`, `7d`).

use std::time::Duration;

/// Parses durations such as `500ms`, `30s`, `5m`, `12h`, `30d`, `2w` or a plain number of
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 30s, 5m, 7d)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        "w" => n * 7.0 * 86_400.0,
        u => {
            return Err(format!(
                "bad duration unit {u:?} in {s:?} (ms, s, m, h, d, w)"
            ));
        }
    };
    if !(0.0..=1e10).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ISO 8601 UTC with milliseconds.
pub fn iso(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Parses a time parameter: Unix seconds (< 10¹¹), Unix milliseconds, or ISO 8601
/// (`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]]`, optional `Z` or `±HH:MM`).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(if n.abs() < 100_000_000_000 {
            n.checked_mul(1000)?
        } else {
            n
        });
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo as u32, d as u32) * 86_400_000;
    let mut rest = s.get(10..)?;
    if let Some(t) = rest.strip_prefix(['T', ' ']) {
        let (h, mi) = (num(11..13)?, num(14..16)?);
        if t.as_bytes().get(2) != Some(&b':') || h > 23 || mi > 59 {
            return None;
        }
        ms += h * 3_600_000 + mi * 60_000;
        rest = s.get(16..)?;
        if let Some(r) = rest.strip_prefix(':') {
            let sec = num(17..19)?;
            if sec > 60 {
                return None;
            }
            ms += sec * 1000;
            rest = r.get(2..)?;
            if let Some(frac) = rest.strip_prefix('.') {
                let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 {
                    return None;
                }
                let f = frac.get(..digits.min(3))?;
                let scale = [100, 10, 1][f.len() - 1];
                ms += f.parse::<i64>().ok()? * scale;
                rest = frac.get(digits..)?;
            }
        }
    }
    match rest {
        "" | "Z" | "z" => Some(ms),
        tz => {
            let sign = match tz.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let tz = tz.get(1..)?.replace(':', "");
            if tz.len() != 4 || !tz.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let off = tz.get(..2)?.parse::<i64>().ok()? * 3_600_000
                + tz.get(2..)?.parse::<i64>().ok()? * 60_000;
            Some(ms - sign * off)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "x", "5y", "-1s", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_and_parses() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_764_093_600_123), "2025-11-25T18:00:00.123Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
        for ms in [0, 1, 951_782_400_000, 1_764_093_600_123, 4_102_444_799_999] {
            assert_eq!(parse_time(&iso(ms)), Some(ms));
        }
        assert_eq!(parse_time("1764093600"), Some(1_764_093_600_000));
        assert_eq!(parse_time("1764093600123"), Some(1_764_093_600_123));
        assert_eq!(parse_time("2025-11-25"), Some(1_764_028_800_000));
        assert_eq!(parse_time("2025-11-25T18:00"), Some(1_764_093_600_000));
        assert_eq!(
            parse_time("2025-11-25T20:00:00+02:00"),
            Some(1_764_093_600_000)
        );
        assert_eq!(
            parse_time("2026-03-28T01:17:14.086123"),
            parse_time("2026-03-28T01:17:14.086Z")
        );
        for bad in [
            "",
            "x",
            "2025-13-01",
            "2025-11-25T25:00",
            "2025-11-25T18:00:00.",
            "2025-11-25X",
            "9999999999999999999999",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
