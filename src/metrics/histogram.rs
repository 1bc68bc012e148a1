//! A latency histogram made of atomics only: observing one value is a
//! bucket search over a dozen constants and two relaxed `fetch_add`s, so it
//! can sit on the request path and inside the journal writer without a
//! lock (prometheus-client's own `Histogram` takes a mutex per
//! observation). It is encoded with the official crate's encoder at scrape
//! time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Upper bounds of the buckets, in nanoseconds: 50 µs to 5 s. A durable
/// change takes about 0.3 ms (one fdatasync), a read a few µs.
const BOUNDS_NS: [u64; 14] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    5_000_000_000,
];

/// Counts of observations per bucket (not cumulative; the last one is
/// +Inf), their sum in nanoseconds, and the last value observed.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
    last_ns: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS
            .iter()
            .position(|b| ns <= *b)
            .unwrap_or(BOUNDS_NS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.last_ns.store(ns, Ordering::Relaxed);
    }

    /// How many values were observed.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The last value observed, if any.
    pub fn last(&self) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_nanos(self.last_ns.load(Ordering::Relaxed)))
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder takes the count of each bucket and sums them itself.
        let mut count = 0;
        let mut buckets = Vec::with_capacity(BOUNDS_NS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            let upper = BOUNDS_NS
                .get(i)
                .map_or(f64::INFINITY, |ns| *ns as f64 / 1e9);
            buckets.push((upper, n));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_each_value_once() {
        let h = Histogram::default();
        for us in [10, 50, 51, 300, 7_000_000] {
            h.observe(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 5);
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 2); // 10 µs, 50 µs
        assert_eq!(h.buckets[1].load(Ordering::Relaxed), 1); // 51 µs
        assert_eq!(h.buckets[3].load(Ordering::Relaxed), 1); // 300 µs
        assert_eq!(h.buckets[BOUNDS_NS.len()].load(Ordering::Relaxed), 1); // 7 s
        assert_eq!(h.last(), Some(Duration::from_secs(7)));
    }
}
