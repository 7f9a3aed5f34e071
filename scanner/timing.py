"""How fast a scan goes: nmap's -T templates and the options that override them, resolved into
one Timing, and the Window that paces an adaptive scan (no --rate) from what it measures.

The window works as nmap's congestion control does, over the whole scan rather than per host:
probes in flight are limited to the window; every genuine reply grows it (by one in slow start,
so it doubles each round trip, then by 1/window); a reply to a *retransmitted* probe means the
first one was lost, and halves it (at most once per probe timeout: a loss shows only when a
resend is answered). A probe whose timeout passes (srtt + 4 rttvar, clamped to the RTT-timeout
options) leaves the window and is retried at once.
--max-rate/--scan-delay cap the pace, --min-rate/--max-scan-delay floor it, the parallelism
options bound the window. --rate N bypasses all of this: exactly N packets a second."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np

# nmap's timing templates (nmap(1), "Timing templates"), and the window scanner derives from them.
#   level: (min-rtt, max-rtt, initial-rtt timeout, max-retries, scan-delay, max-scan-delay,
#           host-timeout, max-parallelism, initial window, largest window)
TEMPLATES = {
    0: (0.1, 10.0, 300.0, 10, 300.0, 1.0, None, 1, 1, 1),
    1: (0.1, 10.0, 15.0, 10, 15.0, 1.0, None, 1, 1, 1),
    2: (0.1, 10.0, 1.0, 10, 0.4, 1.0, None, 1, 1, 1),
    3: (0.1, 10.0, 1.0, 10, 0.0, 1.0, None, None, 32, 16384),
    4: (0.1, 1.25, 0.5, 6, 0.0, 0.01, None, None, 64, 32768),
    5: (0.05, 0.3, 0.25, 2, 0.0, 0.005, 900.0, None, 128, 65536),
}
FIXED_RATE_WAIT = 2.0        # --rate N without --wait: today's fixed wait for late replies
FIXED_RATE_RETRIES = 1       # --rate N without --max-retries: one resend pass, as before


@dataclass(frozen=True)
class Timing:
    adaptive: bool                  # no --rate: the Window paces the scan
    rate: float                     # --rate (0: unlimited); adaptive: the cap (0: none)
    min_rate: float                 # floor of the pace (0: none)
    retries: int
    wait: Optional[float]           # fixed wait after the last probe (None: the RTT timeouts decide)
    min_rtt: float
    max_rtt: float
    initial_rtt: float
    host_timeout: Optional[float]
    min_window: int
    max_window: int
    initial_window: int

    @classmethod
    def from_request(cls, r) -> "Timing":
        (min_rtt, max_rtt, initial_rtt, retries, delay, max_delay, host_timeout, max_par,
         window0, window_max) = TEMPLATES[r.timing]

        def pick(value, default):
            return default if value is None else value
        delay = pick(r.scan_delay, delay)
        max_delay = pick(r.max_scan_delay, max_delay)
        adaptive = r.rate is None
        cap = r.rate if not adaptive else (r.max_rate or 0.0)
        if delay > 0:
            cap = min(cap, 1 / delay) if cap else 1 / delay
        floor = max(r.min_rate or 0.0, 1 / max_delay if max_delay and r.timing >= 3 else 0.0)
        if cap and floor > cap:
            floor = cap
        if not adaptive:            # a fixed rate: no window, unless --max-parallelism asks for one
            max_par, window0, window_max = None, 1 << 30, 1 << 30
        if r.max_parallelism:       # the user's bound replaces the template's largest window
            window_max = r.max_parallelism
        elif max_par:               # -T0..-T2: one probe at a time
            window_max = min(window_max, max_par)
        min_window = min(r.min_parallelism or 1, window_max)
        min_rtt = pick(r.min_rtt_timeout, min_rtt)
        max_rtt = max(pick(r.max_rtt_timeout, max_rtt), min_rtt)
        return cls(adaptive=adaptive, rate=cap, min_rate=floor,
                   retries=pick(r.retries, retries if adaptive else FIXED_RATE_RETRIES),
                   wait=pick(r.wait, None if adaptive else FIXED_RATE_WAIT),
                   min_rtt=min_rtt, max_rtt=max_rtt,
                   initial_rtt=min(max(pick(r.initial_rtt_timeout, initial_rtt), min_rtt), max_rtt),
                   host_timeout=pick(r.host_timeout, host_timeout), min_window=min_window,
                   max_window=window_max, initial_window=max(min_window, min(window0, window_max)))

    def describe(self) -> str:
        pace = (f"fixed {self.rate:g}/s" if not self.adaptive else
                f"adaptive window {self.initial_window}-{self.max_window}"
                + (f", at most {self.rate:g}/s" if self.rate else "")
                + (f", at least {self.min_rate:g}/s" if self.min_rate else ""))
        return (f"timing: {pace}; probe timeout {self.min_rtt:g}-{self.max_rtt:g}s (initially "
                f"{self.initial_rtt:g}s); {self.retries} retries")


class Window:
    """Probes allowed in flight, and the round-trip estimate behind the probe timeout. Replies
    come from the capture thread, decisions from the sending thread: one lock."""

    def __init__(self, timing: Timing):
        self.t = timing
        self.size = float(timing.initial_window)
        self.threshold = float(timing.max_window)   # slow start until here (or the first loss)
        self.srtt: Optional[float] = None
        self.rttvar = 0.0
        self.in_flight = 0
        self.losses = 0                 # back-offs taken
        self.last_backoff = -1.0
        self.max_successful_try = 0     # highest retransmission that got an answer (nmap's rule)
        self._lock = threading.Lock()

    @property
    def timeout(self) -> float:
        if self.srtt is None:
            return self.t.initial_rtt
        return min(max(self.srtt + 4 * self.rttvar, self.t.min_rtt), self.t.max_rtt)

    def room(self) -> int:
        return max(0, int(self.size) - self.in_flight)

    def sent(self, n: int) -> None:
        with self._lock:
            self.in_flight += n

    def expired(self, n: int) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - n)

    def replies(self, now: float, rtts: np.ndarray, n: int, retried: int, max_try: int) -> None:
        """n replies to probes in flight; rtts: the samples of first sends among them (Karn);
        retried: how many answered a retransmission (the original was lost)."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - n)
            if len(rtts):
                # The middle sample (np.median would import numpy.ma on first use: ~10 ms in
                # the capture thread during the first round trip).
                ordered = np.sort(rtts)
                sample = float(ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2
                if self.srtt is None:
                    self.srtt, self.rttvar = sample, sample / 2
                else:           # RFC 6298's smoothing
                    self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
                    self.srtt = 0.875 * self.srtt + 0.125 * sample
            self.max_successful_try = max(self.max_successful_try, max_try)
            # A loss shows only when a resend is answered, a probe timeout after the drop: the
            # drops of one probe timeout are one congestion event.
            if retried and now - self.last_backoff > self.timeout:
                self.threshold = max(self.t.min_window, self.size / 2)
                self.size = self.threshold
                self.last_backoff = now
                self.losses += 1
                n -= retried
            slow = max(0.0, min(float(n), self.threshold - self.size))   # slow start: +1 a reply
            self.size += slow + (n - slow) / max(self.size + slow, 1.0)  # then about +1 a window
            self.size = min(max(self.size, self.t.min_window), self.t.max_window)

    def tries_allowed(self) -> int:
        """nmap retransmits beyond the first resend only once resends have been seen answered."""
        return min(self.t.retries, self.max_successful_try + 1)

    def snapshot(self) -> dict:
        return {"window": int(self.size), "srtt": self.srtt, "timeout": self.timeout, "losses": self.losses}
