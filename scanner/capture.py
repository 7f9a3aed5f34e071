"""Reply capture: a pcapy-ng live handle with a kernel BPF filter, drained in batches by one
thread; each batch goes through the compiled parser, never through per-packet Python."""
from __future__ import annotations

import select
import threading
from typing import Optional

import pcapy

from .errors import EnvironmentFault

LINK_HEADER_LEN = {pcapy.DLT_EN10MB: 14, pcapy.DLT_RAW: 0, pcapy.DLT_LINUX_SLL: 16}
BATCH = 8192


class Capture:
    def __init__(self, ifname: str, bpf: str, buffer_bytes: int = 64 << 20, snaplen: int = 256):
        self.ifname = ifname
        try:
            self.handle = pcapy.create(ifname)
            self.handle.set_snaplen(snaplen)
            self.handle.set_buffer_size(buffer_bytes)
            self.handle.set_timeout(10)
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
                    select.select([self.fd], [], [], 0.02)
            while self._drain(on_batch):      # what arrived before stop() was called
                pass
        except Exception as e:   # reported by stop(): a capture failure must not pass silently
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.error:
            raise EnvironmentFault(f"capture on {self.ifname} failed: {self.error}")

    def stats(self):
        """(received, dropped by the kernel, dropped by the interface), as libpcap counts them."""
        return self.handle.stats()
