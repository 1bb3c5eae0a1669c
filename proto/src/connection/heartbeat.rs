//! Heartbeat probes and round-trip estimation (spec/protocol.md §8).

use bytes::{BufMut, Bytes, BytesMut};
use std::time::{Duration, Instant};

use super::config::HEARTBEAT_SEQ_LEN;
use super::Carrier;

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

/// The heartbeat of an established connection.
#[derive(Debug)]
pub(super) struct Heartbeat {
    /// Probe after this much inbound silence (never zero here: a zero interval means no
    /// heartbeat, and no `Heartbeat` is built).
    pub(super) interval: Duration,
    /// Declare the peer dead after this much inbound silence.
    pub(super) timeout: Duration,
    carrier: Carrier,
    app_data: Bytes,
    next_seq: u64,
    /// Recent probes: (sequence number, send time), overwritten round-robin.
    outstanding: [Option<(u64, Instant)>; OUTSTANDING],
}

impl Heartbeat {
    pub(super) fn new(
        interval: Duration,
        timeout: Duration,
        carrier: Carrier,
        app_data: Bytes,
    ) -> Self {
        Heartbeat {
            interval,
            timeout,
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
    fn pongs_match_recent_probes_only() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut hb = Heartbeat::new(
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
