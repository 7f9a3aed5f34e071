"""One shard of a cluster scan, as it runs on a worker (a Dask task).

The task says hello to the coordinator (through the scan's Dask queue) and waits for its go:
the rate it may send at, and, when the shard ran before on a worker that died (or the scan is a
resumed one), the cursor to go on from and the shard's probes already answered. It then runs
the ordinary engine on `--shard k/N` of the shared permutation (same seed, same cookie key on
every worker) and streams what the capture finds back as numpy arrays, a batch every FLUSH
seconds. Each batch carries a cursor that lags the sender by the scan's --wait: every probe
before it has had the time to be answered, so a shard resumed there loses nothing (the
coordinator drops the replies it already has)."""
from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FLUSH = 0.25                   # seconds between batches
FLUSH_ROWS = 1 << 16           # or sooner, once this many rows wait
PUT_TIMEOUT = 120.0            # a coordinator that takes nothing for this long is gone: stop
GO_TIMEOUT = 60.0


@dataclass
class ShardTask:
    scan: str                  # the scan's id: names its queue and variables
    shard: int                 # 0 .. n_shards-1
    n_shards: int
    targets: Any               # TargetSet
    probes: Any                # Probes
    seed: int
    key: bytes                 # cookie key, shared by the whole scan
    retries: int
    wait: float
    udp_rounds: int
    list_unanswered: bool
    dry_run: bool = False      # no packets: every probe "answers" (benchmarks of the merge)


def queue_name(scan: str) -> str:
    return f"scanner-{scan}"


def go_name(scan: str, token: str) -> str:
    return f"scanner-{scan}-go-{token}"


def stop_name(scan: str) -> str:
    return f"scanner-{scan}-stop"


def run_shard(task: ShardTask) -> dict:
    """The Dask task: runs one shard on this worker; returns its engine summary as a dict."""
    from distributed import Event, Queue, Variable, get_worker

    from ..engine import StageCheckpoint, Scan, ScanConfig, Tracker
    from ..space import ScanSpace
    from .worker import PLUGIN_NAME

    worker = get_worker()
    plugin: Any = worker.plugins.get(PLUGIN_NAME)
    queue, token = Queue(queue_name(task.scan)), uuid.uuid4().hex
    stop_event = Event(stop_name(task.scan))

    def alive() -> bool:
        """Whether this worker still has its scheduler (it closes as soon as it loses it)."""
        return worker.status.name in ("running", "paused")

    def put(item):
        """Waits while the queue is full (backpressure); gives up once the scheduler is gone or
        nothing was taken for PUT_TIMEOUT seconds."""
        deadline = time.monotonic() + PUT_TIMEOUT
        while True:
            if not alive():
                raise ConnectionError("this worker lost its scheduler")
            try:
                return queue.put(item, timeout=1.0)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    put(("hello", task.shard, token, worker.address))
    go = Variable(go_name(task.scan, token)).get(timeout=GO_TIMEOUT)
    Variable(go_name(task.scan, token)).delete()

    space = ScanSpace(task.targets, task.probes)
    rate = go["rate"]
    if plugin is not None and plugin.max_rate:
        rate = min(rate, plugin.max_rate) if rate else plugin.max_rate
    config = ScanConfig(space=space, rate=rate, retries=task.retries, wait=task.wait, seed=task.seed,
                        shard=(task.shard + 1, task.n_shards), list_unanswered=task.list_unanswered,
                        interface=plugin.interface if plugin is not None else None, udp_rounds=task.udp_rounds)
    bitmap = Tracker(space.size).bitmap
    answered = np.frombuffer(go["answered"], dtype=np.uint64)
    np.bitwise_or.at(bitmap, answered >> np.uint64(3), (np.uint8(1) << (answered & np.uint64(7)).astype(np.uint8)))
    start = config.positions()[0]
    attempt, position = go["cursor"] or (0, start)
    scan = (DryScan if task.dry_run else Scan)(config, StageCheckpoint(attempt, position, bitmap, task.key))

    pending, lock = [], threading.Lock()
    samples = deque([(time.monotonic(), scan.cursor)])   # (when, cursor): for the lagging cursor
    lag = max(0.2, task.wait)
    live = plugin.live if plugin is not None else {}
    done = threading.Event()
    failure = []

    def sink(rows):
        with lock:
            pending.append(rows)

    def snapshot() -> dict:
        # "sending": seconds in send passes (while a pass runs, the time since the first began).
        sending = scan.summary.sending or (time.monotonic() - began)
        return {"sent": scan.sender.sent if scan.sender is not None else scan.summary.sent,
                "sending": sending, "rate": rate}

    def flush(cursor):
        with lock:
            rows = np.concatenate(pending) if len(pending) > 1 else (pending[0] if pending else None)
            pending.clear()
        # Raw bytes: msgpack carries them as they are (RESULT_DTYPE rows, 1 copy each way).
        data = rows.tobytes() if rows is not None else b""
        put(("rows", task.shard, token, cursor, data, snapshot()))

    def flusher():
        """Sends batches while the shard runs; a lost scheduler or coordinator stops the scan."""
        try:
            while not done.wait(FLUSH):
                if not alive():
                    raise ConnectionError("this worker lost its scheduler")
                now = time.monotonic()
                samples.append((now, scan.cursor))
                while len(samples) > 1 and samples[1][0] <= now - lag:
                    samples.popleft()
                live[task.shard] = snapshot()
                flush(samples[0][1] if samples[0][0] <= now - lag else None)
                if stop_event.is_set():
                    scan.stop()
        except Exception as e:          # noqa: BLE001 -- whatever broke the link, stop sending
            failure.append(e)
            scan.stop()

    began = time.monotonic()
    def watchdog():
        """Stops sending at once when the worker loses its scheduler (a put may be stuck)."""
        while not done.wait(0.1):
            if not alive():
                scan.stop()
                return

    thread = threading.Thread(target=flusher, name=f"shard-{task.shard}", daemon=True)
    thread.start()
    threading.Thread(target=watchdog, name=f"shard-{task.shard}-watchdog", daemon=True).start()
    try:
        summary = scan.run(sink)
    finally:
        done.set()
        thread.join()
        live.pop(task.shard, None)
    if failure:
        raise failure[0]
    result = asdict(summary)
    result["rate"] = rate
    with lock:
        data = b"".join(r.tobytes() for r in pending)
        pending.clear()
    put(("done", task.shard, token, scan.cursor, data, result))
    return result


class DryScan:
    """The engine's interface without packets: every probe of the shard answers "open", at the
    configured rate (0: as fast as numpy builds the rows). For measuring the merge path."""

    def __init__(self, config, resume):
        from ..engine import ScanSummary, Tracker
        self.config, self.space = config, config.space
        self.tracker = Tracker(self.space.size, resume.bitmap)
        self.cursor = (resume.attempt, resume.position)
        self.summary = ScanSummary()
        self.sender = None
        self._stop = threading.Event()

    def stop(self):
        self._stop.set()

    def run(self, sink):
        from ..states import REASONS, STATES
        from ..engine import emit_rows
        began = time.monotonic()
        start, step, count = self.config.positions()
        self.summary.probes = count
        chunk = 1 << 16
        perm_chunks = self.config.indices(chunk)
        position = start
        for indices in perm_chunks:
            if self._stop.is_set():
                self.summary.interrupted = True
                break
            position += len(indices) * step
            if position <= self.cursor[1]:
                continue
            indices = indices[~self.tracker.answered(indices)]
            rows = self.space.rows(indices)
            rows["state"], rows["reason"], rows["ttl"] = STATES["open"], REASONS["syn-ack"], 64
            self.tracker.first_seen(rows)
            self.summary.sent += len(rows)
            self.summary.replies += len(rows)
            emit_rows(self.summary, sink, rows)
            self.cursor = (0, position)
            if self.config.rate:
                time.sleep(len(indices) / self.config.rate)
        self.summary.elapsed = self.summary.sending = time.monotonic() - began
        return self.summary

