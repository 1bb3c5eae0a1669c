//! Heartbeat probes and round-trip estimation (spec/protocol.md §8).

use bytes::{BufMut, Bytes, BytesMut};
use std::time::{Duration, Instant};

use super::config::HEARTBEAT_SEQ_LEN;
use super::Carrier;
use crate::Side;

/// How many unanswered probes are remembered for RTT samples. A pong for an older probe
/// still proves liveness; it just gives no sample.
const OUTSTANDING: usize = 4;

/// Smoothed round-trip time, estimated as in RFC 6298 §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RttStats {
    /// The smoothed RTT (SRTT), `None` before the first sample.
    pub smoothed: Option<Duration>,
    /// The RTT variation (RTTVAR).
    pub variance: Duration,
    /// The latest sample.
    pub latest: Option<Duration>,
    /// How many samples were taken.
    pub samples: u64,
}

impl RttStats {
    /// Folds one sample in: the first sets SRTT = R, RTTVAR = R/2; later ones use
    /// alpha = 1/8 and beta = 1/4.
    pub(super) fn update(&mut self, sample: Duration) {
        self.latest = Some(sample);
        self.samples = self.samples.saturating_add(1);
        self.smoothed = Some(match self.smoothed {
            None => {
                self.variance = sample / 2;
                sample
            }
            Some(srtt) => {
                let diff = srtt.max(sample) - srtt.min(sample);
                // 3/4 and 7/8 taken as x - x/4 and x - x/8: no intermediate product can
                // overflow, whatever the samples (a caller's clock may jump far ahead).
                self.variance = self.variance - self.variance / 4 + diff / 4;
                srtt - srtt / 8 + sample / 8
            }
        });
    }
}

/// How long `side` waits in silence before it probes (spec/protocol.md §8.2): the client
/// the interval *I*, the server the smaller of 3*I*/2 and (*I* + *T*)/2. While both are
/// idle the client's probe comes first and its answer resets the server's wait, so one
/// probe and one answer cross per interval, not two of each; the server still probes
/// before its timeout when nothing comes (a client that receives and sends nothing, or
/// that does not probe), leaving at least (*T* − *I*)/2 for the answer. `timeout` is
/// greater than `interval` (§7.4); were it not, the server would wait *I*.
pub(super) fn probe_delay(side: Side, interval: Duration, timeout: Duration) -> Duration {
    match side {
        Side::Client => interval,
        Side::Server => {
            let half_margin = timeout.saturating_sub(interval) / 2;
            interval.saturating_add(half_margin.min(interval / 2))
        }
    }
}

/// The heartbeat of an established connection.
#[derive(Debug)]
pub(super) struct Heartbeat {
    /// Probe after this much inbound silence (never zero here: a zero interval means no
    /// heartbeat, and no `Heartbeat` is built).
    pub(super) interval: Duration,
    /// Declare the peer dead after this much inbound silence.
    pub(super) timeout: Duration,
    /// Probe after this much inbound silence, and again as often while it lasts: this
    /// side's probe delay ([`probe_delay`]).
    pub(super) probe_after: Duration,
    carrier: Carrier,
    app_data: Bytes,
    next_seq: u64,
    /// Recent probes: (sequence number, send time), overwritten round-robin.
    outstanding: [Option<(u64, Instant)>; OUTSTANDING],
}

impl Heartbeat {
    pub(super) fn new(
        side: Side,
        interval: Duration,
        timeout: Duration,
        carrier: Carrier,
        app_data: Bytes,
    ) -> Self {
        Heartbeat {
            interval,
            timeout,
            probe_after: probe_delay(side, interval, timeout),
            carrier,
            app_data,
            next_seq: 0,
            outstanding: [None; OUTSTANDING],
        }
    }

    pub(super) fn carrier(&self) -> Carrier {
        self.carrier
    }

    /// The payload of the next probe: sequence number (64, big-endian) then app data.
    pub(super) fn probe(&mut self, now: Instant) -> Bytes {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        // `seq % OUTSTANDING` is always in bounds; `as` only narrows a value < 4.
        self.outstanding[(seq % OUTSTANDING as u64) as usize] = Some((seq, now));
        let mut buf = BytesMut::with_capacity(HEARTBEAT_SEQ_LEN + self.app_data.len());
        buf.put_u64(seq);
        buf.put_slice(&self.app_data);
        buf.freeze()
    }

    /// The round trip, if `payload` answers one of the recent probes.
    pub(super) fn on_pong(&mut self, payload: &[u8], now: Instant) -> Option<Duration> {
        let (seq, data) = payload.split_first_chunk::<HEARTBEAT_SEQ_LEN>()?;
        if data != &self.app_data[..] {
            return None;
        }
        let seq = u64::from_be_bytes(*seq);
        let slot = &mut self.outstanding[(seq % OUTSTANDING as u64) as usize];
        match *slot {
            Some((sent_seq, sent_at)) if sent_seq == seq => {
                *slot = None;
                Some(now.saturating_duration_since(sent_at))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_follows_rfc6298() {
        let mut rtt = RttStats::default();
        rtt.update(Duration::from_millis(100));
        assert_eq!(rtt.smoothed, Some(Duration::from_millis(100)));
        assert_eq!(rtt.variance, Duration::from_millis(50));
        rtt.update(Duration::from_millis(200));
        // RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 62.5; SRTT = 7/8 * 100 + 1/8 * 200 = 112.5
        assert_eq!(rtt.variance, Duration::from_micros(62_500));
        assert_eq!(rtt.smoothed, Some(Duration::from_micros(112_500)));
        assert_eq!(rtt.samples, 2);
    }

    #[test]
    fn the_client_probes_first_and_the_server_before_its_timeout() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // The defaults (§8.4): the client after 10 s, the server after 15 s.
        assert_eq!(probe_delay(Side::Client, s(10), s(30)), s(10));
        assert_eq!(probe_delay(Side::Server, s(10), s(30)), s(15));
        // A timeout close to the interval: half way between them.
        assert_eq!(probe_delay(Side::Server, s(10), s(12)), s(11));
        assert_eq!(probe_delay(Side::Server, ms(500), ms(1500)), ms(750));
        assert_eq!(
            probe_delay(Side::Server, ms(10), ms(11)),
            ms(10) + Duration::from_micros(500)
        );
        // Never at or past the timeout while it is above the interval.
        for (i, t) in [
            (1, 2),
            (1, 3),
            (7, 8),
            (10_000, 10_001),
            (86_400_000, 86_400_000),
        ] {
            let (i, t) = (ms(i), ms(t));
            let p = probe_delay(Side::Server, i, t);
            assert!(p >= i && (p < t || t <= i), "{i:?} {t:?}: {p:?}");
        }
    }

    #[test]
    fn pongs_match_recent_probes_only() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut hb = Heartbeat::new(
            Side::Client,
            ms(10),
            ms(30),
            Carrier::WebSocket,
            Bytes::from_static(b"app"),
        );
        let first = hb.probe(t0);
        assert_eq!(&first[..], b"\0\0\0\0\0\0\0\0app");
        assert_eq!(hb.on_pong(&first, t0 + ms(7)), Some(ms(7)));
        // Answered once only.
        assert_eq!(hb.on_pong(&first, t0 + ms(8)), None);
        // Wrong app data, short payloads and unknown sequence numbers give no sample.
        let second = hb.probe(t0);
        assert_eq!(hb.on_pong(&second[..8], t0), None);
        assert_eq!(hb.on_pong(b"", t0), None);
        assert_eq!(hb.on_pong(b"\0\0\0\0\0\0\0\x09app", t0), None);
        // A probe overwritten by newer ones no longer matches.
        for _ in 0..OUTSTANDING {
            hb.probe(t0);
        }
        assert_eq!(hb.on_pong(&second, t0), None);
        // A clock that went backwards gives zero, not a panic.
        let third = hb.probe(t0 + ms(5));
        assert_eq!(hb.on_pong(&third, t0), Some(Duration::ZERO));
    }
}
