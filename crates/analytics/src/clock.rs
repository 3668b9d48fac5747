//! Clock skew, robustly: whose clock is wrong and by how much.
//!
//! - An **observer**'s skew is its envelope time minus meshlens' receipt time. The writer keeps
//!   the median of each 5-minute bucket's readings; [`observer_offset`] takes the weighted
//!   median of those bucket medians, so a burst of late (buffered) uploads or one wrong status
//!   cannot move it.
//! - A **node**'s skew is its advert's own timestamp minus when meshlens first heard that
//!   advert. [`node_skew`] drops replays (an advert not newer than one the node already sent:
//!   a repeated old advert says nothing about the clock now), then summarises: median over all,
//!   median of the recent ones (what the clock is doing now, which drives the severity),
//!   drift by the Theil–Sen slope (the median of pairwise slopes, which a clock correction
//!   cannot drag).
//!
//! Pure functions over values the reader loaded; every input bounded by the caller.

/// Severity of a skew, by its magnitude: under 5 minutes `ok`, under an hour `warning`, under
/// 30 days `critical`, under a year `absurd`, beyond `no_clock` (an RTC that was never set).
/// These bands are CoreScope's, so its UI colours meshlens' answers the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// |skew| < 5 min.
    Ok,
    /// < 1 h.
    Warning,
    /// < 30 days.
    Critical,
    /// < 365 days.
    Absurd,
    /// ≥ 365 days.
    NoClock,
}

impl Severity {
    /// From a skew in seconds.
    pub fn of(skew_sec: f64) -> Severity {
        let a = skew_sec.abs();
        if a >= 365.0 * 86_400.0 {
            Severity::NoClock
        } else if a >= 30.0 * 86_400.0 {
            Severity::Absurd
        } else if a >= 3_600.0 {
            Severity::Critical
        } else if a >= 300.0 {
            Severity::Warning
        } else {
            Severity::Ok
        }
    }

    /// The served name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
            Severity::Absurd => "absurd",
            Severity::NoClock => "no_clock",
        }
    }
}

/// The median of `v` (sorted in place); None when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return None;
    }
    if n % 2 == 1 {
        v.get(n / 2).copied()
    } else {
        Some((v.get(n / 2 - 1)? + v.get(n / 2)?) / 2.0)
    }
}

/// An observer's clock from its buckets: (bucket median in ms, readings in the bucket).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObserverOffset {
    /// Weighted median of the bucket medians, seconds (positive: the observer is ahead).
    pub offset_sec: f64,
    /// Readings behind it.
    pub samples: i64,
    /// Buckets behind it.
    pub buckets: usize,
}

/// The weighted median (each bucket weighs its reading count, at least 1) of bucket medians.
pub fn observer_offset(buckets: &[(i64, i64)]) -> Option<ObserverOffset> {
    let mut v: Vec<(i64, i64)> = buckets.iter().map(|&(m, n)| (m, n.max(1))).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by_key(|&(m, _)| m);
    let total: i64 = v.iter().map(|&(_, n)| n).fold(0i64, i64::saturating_add);
    // The smallest median whose cumulative weight reaches half; on an exact half, the mean of
    // it and the next, as an unweighted median of an even count would be.
    let mut acc = 0i64;
    let mut offset_ms = 0.0;
    for (i, &(m, n)) in v.iter().enumerate() {
        acc = acc.saturating_add(n);
        if acc.saturating_mul(2) >= total {
            offset_ms = if acc.saturating_mul(2) == total {
                let next = v.get(i + 1).map_or(m, |&(x, _)| x);
                (m as f64 + next as f64) / 2.0
            } else {
                m as f64
            };
            break;
        }
    }
    Some(ObserverOffset {
        offset_sec: offset_ms / 1000.0,
        samples: total,
        buckets: v.len(),
    })
}

/// One advert of a node: when meshlens first heard it and the time it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertSample {
    /// First heard, Unix ms (meshlens' clock).
    pub heard_at_ms: i64,
    /// The advert's own timestamp, Unix seconds.
    pub advert_time: u32,
}

/// A node's clock skew, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSkew {
    /// Mean skew over all samples, s.
    pub mean_sec: f64,
    /// Median over all samples, s.
    pub median_sec: f64,
    /// The latest sample, s.
    pub last_sec: f64,
    /// Median of the recent samples (the latest [`RECENT_COUNT`] within [`RECENT_SPAN_MS`]
    /// of the last), s: the clock now.
    pub recent_median_sec: f64,
    /// Drift, seconds per day (Theil–Sen); 0 with under [`MIN_DRIFT_SAMPLES`] samples or
    /// under an hour of them.
    pub drift_per_day_sec: f64,
    /// From the recent median.
    pub severity: Severity,
    /// Samples used (replays excluded).
    pub sample_count: usize,
    /// Samples in the recent window.
    pub recent_sample_count: usize,
    /// Recent samples more than an hour off.
    pub recent_bad_sample_count: usize,
    /// Share of recent samples within an hour.
    pub good_fraction: f64,
    /// Adverts ignored as replays.
    pub replays_ignored: usize,
    /// The latest advert's own time, Unix s.
    pub last_advert_ts: u32,
    /// When it was heard, Unix s.
    pub last_observed_ts: i64,
    /// (heard, Unix s; skew, s) oldest first, for a sparkline.
    pub samples: Vec<(i64, f64)>,
}

/// Recent samples at most.
pub const RECENT_COUNT: usize = 9;
/// The recent window before the last sample.
pub const RECENT_SPAN_MS: i64 = 24 * 3_600_000;
/// Samples needed for a drift.
pub const MIN_DRIFT_SAMPLES: usize = 5;
/// Points fed to Theil–Sen (quadratic in them), the most recent.
pub const MAX_DRIFT_POINTS: usize = 200;

/// Summarises a node's adverts (any order). None when no advert is left after replays.
pub fn node_skew(adverts: &[AdvertSample]) -> Option<NodeSkew> {
    let mut v = adverts.to_vec();
    v.sort_by_key(|a| (a.heard_at_ms, a.advert_time));
    let mut newest: Option<u32> = None;
    let mut replays = 0usize;
    let mut kept: Vec<(i64, f64)> = Vec::with_capacity(v.len());
    let mut last = None;
    for a in v {
        if newest.is_some_and(|n| a.advert_time <= n) {
            replays += 1;
            continue;
        }
        newest = Some(a.advert_time);
        // Whole seconds against whole seconds: the advert's clock has no finer resolution, so
        // a node whose clock is right reads 0, not a fraction behind.
        let skew = (i64::from(a.advert_time) - a.heard_at_ms.div_euclid(1000)) as f64;
        kept.push((a.heard_at_ms, skew));
        last = Some(a);
    }
    let last = last?;
    let &(last_heard, last_sec) = kept.last()?;
    let mut all: Vec<f64> = kept.iter().map(|&(_, s)| s).collect();
    let mean_sec = all.iter().sum::<f64>() / all.len() as f64;
    let median_sec = median(&mut all)?;
    let mut recent: Vec<f64> = kept
        .iter()
        .rev()
        .take(RECENT_COUNT)
        .take_while(|&&(t, _)| last_heard.saturating_sub(t) <= RECENT_SPAN_MS)
        .map(|&(_, s)| s)
        .collect();
    let recent_sample_count = recent.len();
    let recent_bad_sample_count = recent.iter().filter(|s| s.abs() > 3_600.0).count();
    let good_fraction = if recent_sample_count == 0 {
        0.0
    } else {
        (recent_sample_count - recent_bad_sample_count) as f64 / recent_sample_count as f64
    };
    let recent_median_sec = median(&mut recent).unwrap_or(last_sec);
    let drift = drift_per_day(&kept);
    Some(NodeSkew {
        mean_sec,
        median_sec,
        last_sec,
        recent_median_sec,
        drift_per_day_sec: drift,
        severity: Severity::of(recent_median_sec),
        sample_count: kept.len(),
        recent_sample_count,
        recent_bad_sample_count,
        good_fraction,
        replays_ignored: replays,
        last_advert_ts: last.advert_time,
        last_observed_ts: last.heard_at_ms.div_euclid(1000),
        samples: kept.iter().map(|&(t, s)| (t.div_euclid(1000), s)).collect(),
    })
}

/// Theil–Sen slope of (ms, skew s) points sorted by time, in seconds per day. 0 when there
/// are too few points, they span under an hour, or the slope is past a day per day (no real
/// oscillator drifts like that: the samples straddle a clock reset).
pub fn drift_per_day(points: &[(i64, f64)]) -> f64 {
    let start = points.len().saturating_sub(MAX_DRIFT_POINTS);
    let p = points.get(start..).unwrap_or(&[]);
    let (Some(first), Some(last)) = (p.first(), p.last()) else {
        return 0.0;
    };
    if p.len() < MIN_DRIFT_SAMPLES || last.0.saturating_sub(first.0) < 3_600_000 {
        return 0.0;
    }
    let mut slopes = Vec::with_capacity(p.len() * (p.len() - 1) / 2);
    for (i, a) in p.iter().enumerate() {
        for b in p.iter().skip(i + 1) {
            let dt = b.0.saturating_sub(a.0);
            if dt > 0 {
                slopes.push((b.1 - a.1) / (dt as f64 / 86_400_000.0));
            }
        }
    }
    match median(&mut slopes) {
        Some(s) if s.is_finite() && s.abs() <= 86_400.0 => s,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_median_of_buckets() {
        // One bucket of garbage cannot move three good ones.
        let o =
            observer_offset(&[(90_000, 10), (89_500, 10), (3_600_000, 1), (90_400, 10)]).unwrap();
        assert_eq!(o.offset_sec, 90.0);
        assert_eq!((o.samples, o.buckets), (31, 4));
        assert_eq!(observer_offset(&[]), None);
        // An exact half: the mean of the two middles.
        assert_eq!(
            observer_offset(&[(1000, 1), (3000, 1)]).unwrap().offset_sec,
            2.0
        );
        // Hostile counts never overflow.
        assert!(observer_offset(&[(1, i64::MAX), (2, i64::MAX)]).is_some());
    }

    #[test]
    fn node_an_hour_behind_and_replays() {
        let h = 3_600_000;
        let t0 = 1_780_000_000_000i64;
        let mut adverts: Vec<AdvertSample> = (0..12)
            .map(|i| AdvertSample {
                heard_at_ms: t0 + i * h,
                advert_time: ((t0 + i * h) / 1000 - 3600) as u32,
            })
            .collect();
        // A replay of the first advert heard much later, and a one-off wild advert.
        adverts.push(AdvertSample {
            heard_at_ms: t0 + 20 * h,
            advert_time: adverts[0].advert_time,
        });
        let s = node_skew(&adverts).unwrap();
        assert_eq!(s.replays_ignored, 1);
        assert_eq!(s.median_sec, -3600.0);
        assert_eq!(s.recent_median_sec, -3600.0);
        assert_eq!(s.severity, Severity::Critical);
        assert_eq!(s.drift_per_day_sec, 0.0);
        assert_eq!(s.sample_count, 12);
        assert_eq!(node_skew(&[]), None);
    }

    #[test]
    fn drift_ignores_a_reset() {
        let h = 3_600_000i64;
        // Drifting +2 s a day, plus one reset sample far away.
        let mut p: Vec<(i64, f64)> = (0..24).map(|i| (i * h, i as f64 * 2.0 / 24.0)).collect();
        p[10].1 = 50_000.0;
        let d = drift_per_day(&p);
        assert!((d - 2.0).abs() < 1e-9, "{d}");
    }

    #[test]
    fn severity_bands() {
        assert_eq!(Severity::of(-299.0), Severity::Ok);
        assert_eq!(Severity::of(300.0), Severity::Warning);
        assert_eq!(Severity::of(-3600.0), Severity::Critical);
        assert_eq!(Severity::of(31.0 * 86_400.0), Severity::Absurd);
        assert_eq!(Severity::of(-1.7e9), Severity::NoClock);
    }
}
