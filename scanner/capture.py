"""Reply capture: a pcapy-ng live handle with a kernel BPF filter, drained in batches by one
thread; each batch goes through the compiled parser, never through per-packet Python."""
from __future__ import annotations

import os
import select
import threading
from typing import Optional

import pcapy

from .errors import EnvironmentFault

LINK_HEADER_LEN = {pcapy.DLT_EN10MB: 14, pcapy.DLT_RAW: 0, pcapy.DLT_LINUX_SLL: 16}
BATCH = 8192


# A capture kept open between the stages of a scan (discovery, then the port scan): opening one
# costs ~30 ms (pcap_activate), reopening it would delay the next stage's first probe.
_IDLE: dict = {}


class Capture:
    @classmethod
    def open(cls, ifname: str, bpf: str, buffer_bytes: int = 64 << 20, timeout_ms: int = 10) -> "Capture":
        """A capture with this filter: the one the previous stage released, if it matches, else new."""
        key = (ifname, buffer_bytes, timeout_ms)
        cap = _IDLE.pop(key, None)
        if cap is None:
            cap = cls(ifname, bpf, buffer_bytes, timeout_ms=timeout_ms)
            cap.key = key
            return cap
        try:
            cap.handle.setfilter(bpf)
        except pcapy.PcapError as e:
            raise EnvironmentFault(f"cannot capture on {ifname}: {e}") from None
        while cap._drain(lambda data, meta: None):     # the previous stage's leftovers
            pass
        try:
            os.read(cap._wake_r, 64)                    # the previous stage's stop()
        except BlockingIOError:
            pass
        cap._stop, cap._thread, cap.error = threading.Event(), None, None
        cap._base = cap.handle.stats()
        return cap

    def release(self) -> None:
        """After stop(): kept for the next stage of the scan."""
        if self.error is None:
            _IDLE[self.key] = self

    def __init__(self, ifname: str, bpf: str, buffer_bytes: int = 64 << 20, snaplen: int = 256,
                 timeout_ms: int = 10):
        """timeout_ms: the kernel hands over a partly filled block after this long (the latency
        of replies, which the adaptive window measures)."""
        self.ifname = ifname
        try:
            self.handle = pcapy.create(ifname)
            self.handle.set_snaplen(snaplen)
            self.handle.set_buffer_size(buffer_bytes)
            self.handle.set_timeout(timeout_ms)
            self.handle.activate()
            self.handle.setfilter(bpf)
        except pcapy.PcapError as e:
            raise EnvironmentFault(f"cannot capture on {ifname}: {e}") from None
        # next_batch can block forever in blocking mode (pcapy-ng 2.1.0): poll the fd instead.
        self.handle.setnonblock(1)
        self.fd = self.handle.getfd()
        datalink = self.handle.datalink()
        if datalink not in LINK_HEADER_LEN:
            raise EnvironmentFault(f"cannot capture on {ifname}: unsupported link type {datalink}")
        self.link_header_len = LINK_HEADER_LEN[datalink]
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None
        self.key: tuple = (ifname, buffer_bytes, timeout_ms)
        self._base = (0, 0, 0)          # the counters when this stage took the capture
        # stop() wakes the capture thread through this pipe, rather than after its poll timeout.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def __del__(self):
        for fd in (getattr(self, "_wake_r", -1), getattr(self, "_wake_w", -1)):
            if fd >= 0:
                os.close(fd)

    def start(self, on_batch) -> None:
        """Calls on_batch(data, meta) from a capture thread for every non-empty batch."""
        self._thread = threading.Thread(target=self._run, args=(on_batch,), name="capture", daemon=True)
        self._thread.start()

    def _drain(self, on_batch) -> int:
        data, meta = self.handle.next_batch(BATCH)
        if len(meta):
            on_batch(data, meta)
        return len(meta) // 16

    def _run(self, on_batch) -> None:
        try:
            while not self._stop.is_set():
                if self._drain(on_batch) == 0:
                    select.select([self.fd, self._wake_r], [], [], 0.005)
            while self._drain(on_batch):      # what arrived before stop() was called
                pass
        except Exception as e:   # reported by stop(): a capture failure must not pass silently
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:         # already full of wake-ups
            pass
        if self._thread:
            self._thread.join()
        if self.error:
            raise EnvironmentFault(f"capture on {self.ifname} failed: {self.error}")

    def stats(self):
        """(received, dropped by the kernel, dropped by the interface), as libpcap counts them."""
        return tuple(now - then for now, then in zip(self.handle.stats(), self._base))


def close_idle() -> None:
    """At the end of a session: nothing is kept across scans (an interface may be gone)."""
    _IDLE.clear()
