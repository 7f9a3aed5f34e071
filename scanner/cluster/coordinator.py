"""The coordinator: one raw scan stage spread over the workers of a Dask cluster.

ClusterScan has the engine's Scan interface (run(sink), stop(), progress(), checkpoint(),
summary), so a command's stages, outputs, store and resume file work as on one machine. It
splits the shared permutation into SHARDS_PER_WORKER x workers shards (`--shard k/N` with the
same seed and cookie key), submits them as Dask tasks (one unit of the "scanner" resource each:
a shard at a time per worker), and merges the batches they stream back through the scan's Dask
queue: a bitmap over the whole space drops what was already received, so a result is written
once even when a shard ran twice. A shard whose worker dies is run again by Dask elsewhere; its
new run asks here for where to go on from (the last cursor received, which lags the sender by
--wait) and which of its probes already answered, and resends nothing else. The scheduler going
away stops the scan: the command then writes its resume file from checkpoint()."""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid

import numpy as np

from ..engine import ScanSummary, StageCheckpoint, Tracker
from ..errors import EnvironmentFault, InputError, ScannerError
from ..states import RESULT_DTYPE, STATE_NAMES
from .shard import ShardTask, go_name, queue_name, run_shard, stop_name
from .worker import PLUGIN_NAME, RESOURCE

SHARDS_PER_WORKER = 8          # many more shards than workers: balance, and small failover units
MIN_SHARD = 1024               # probes; smaller spaces get fewer shards
QUEUE_SLOTS = 256              # batches held by the scheduler before workers wait (backpressure)
SINK_BACKLOG = 64              # batches waiting for the outputs before the coordinator takes no more
SCHEDULER_GRACE = 3.0          # seconds without the scheduler before the scan stops
CONNECT_TIMEOUT = 10.0


class SchedulerLost(Exception):
    pass


def _quiet_dask(level) -> None:
    """Dask logs through its own loggers (distributed, distributed.client, ...)."""
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(level)


def connect(address: str, security=None):
    """A Dask client of the cluster; InputError when it cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise EnvironmentFault("--cluster needs Dask: pip install 'scanner[cluster]'") from None
    if not (address.startswith("tcp://") or address.startswith("tls://")):
        raise InputError(f"bad --cluster '{address}': expected tcp://HOST:PORT or tls://HOST:PORT")
    if security is None and address.startswith("tls://"):
        from distributed.security import Security
        security = Security()           # Dask's configuration: distributed.comm.tls.*
    import dask
    _quiet_dask(logging.WARNING)         # the command speaks for itself
    # A scheduler that went away: calls fail within seconds rather than Dask's default 30 s.
    dask.config.set({"distributed.comm.timeouts.connect": f"{CONNECT_TIMEOUT / 3:g}s"})
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, security=security, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise EnvironmentFault(f"cannot reach the Dask scheduler at {address}: {e}") from None


def scanner_workers(client) -> dict:
    """address -> what the worker advertises (interface, source, max_rate, ...)."""
    workers = client.scheduler_info(n_workers=-1)["workers"] if _takes_n_workers(client) \
        else client.scheduler_info()["workers"]
    return {addr: dict(w.get("metrics", {}).get(PLUGIN_NAME) or {}) for addr, w in workers.items()
            if w.get("resources", {}).get(RESOURCE)}


def _takes_n_workers(client) -> bool:
    import inspect
    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def engine_for(address: str, note=None):
    """A Scan-like class whose instances run on the cluster at address (Session's raw stages)."""
    class Engine(ClusterScan):
        def __init__(self, config, resume=None):
            super().__init__(config, resume, address=address)
            if note is not None:
                self.note = note
    return Engine


class ClusterScan:
    """A raw scan of config.space run by the cluster's workers (see the module's docstring)."""

    def __init__(self, config, resume: StageCheckpoint | None = None, client=None, address: str | None = None,
                 dry_run: bool = False, shards_per_worker: int = SHARDS_PER_WORKER):
        self.config = config
        self.space = config.space
        if config.shard != (1, 1):
            raise InputError("--shard and --cluster do not go together: the cluster shards the scan itself")
        if resume and len(resume.bitmap) != (self.space.size + 7) // 8:
            raise InputError("the resume file does not match this scan (its targets or ports differ)")
        self.resume = resume
        self.tracker = Tracker(self.space.size, resume.bitmap if resume else None)
        self.key = resume.key if resume else os.urandom(16)
        self.client, self.address = client, address
        self.dry_run = dry_run
        self.shards_per_worker = shards_per_worker
        self.summary = ScanSummary()
        self.answered_before = self.tracker.count if resume else 0
        self.received = 0                       # unique results merged
        self.duplicates = 0                     # results that arrived twice (a shard resumed)
        self.workers: dict = {}                 # address -> {"sent", "results", "shards", "rate", "info"}
        self.cursors: dict = {}                 # shard -> (attempt, position) last received
        self.done: set = set()
        self.runs: dict = {}                    # shard -> current run's token
        self.token_sent: dict = {}              # token -> probes that run sent
        self.token_busy: dict = {}              # token -> seconds that run spent sending
        self.token_worker: dict = {}
        self.shard_summaries: dict = {}
        self.complete = lambda: False
        self.note = lambda text: None           # where lines for the user go (the CLI: stderr)
        self._stop = threading.Event()
        self.n_shards = 0
        self.scan_id: str = ""
        self.started: float | None = None

    # -- the Scan interface -------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def progress(self) -> dict:
        """The engine's snapshot, plus each worker's: {address: {"sent", "rate", "results"}}."""
        workers = {addr: {"sent": w["sent"], "rate": w["sent"] / w["busy"] if w["busy"] > 0 else 0.0,
                          "results": w["results"]} for addr, w in list(self.workers.items())}
        return {"sent": sum(self.token_sent.values()), "total": self.space.size,
                "replies": self.received, "open": self.summary.states.get("open", 0), "workers": workers}

    def checkpoint(self) -> StageCheckpoint:
        """The whole scan's state: every answered probe, and a cursor every shard is past (the
        earliest pass any unfinished shard was in, from its start): resumed on one machine or on
        a cluster, probes answered are not sent again and no result is written twice."""
        attempts = [self.cursors.get(s, (self.resume.attempt if self.resume else 0, 0))[0]
                    for s in range(self.n_shards) if s not in self.done]
        return StageCheckpoint(min(attempts, default=self.config.retries + 1), 0, self.tracker.bitmap, self.key)

    def worker_lines(self) -> list:
        """One line per worker: its address, interface, probes sent, its rate and its results."""
        out = []
        for addr, w in sorted(self.workers.items()):
            rate = w["sent"] / w["busy"] if w["busy"] > 0 else 0
            out.append(f"{addr} ({w['info'].get('interface') or 'route'}): {w['sent']} sent "
                       f"({rate:,.0f}/s), {w['results']} results, {len(w['shards'])} shards")
        return out

    # -- running -----------------------------------------------------------
    def run(self, sink) -> ScanSummary:
        client = self.client or connect(self.address or "")
        owns_client = self.client is None
        began = self.started = time.monotonic()
        try:
            self._run(client, sink)
            for line in self.worker_lines():
                self.note(f"worker {line}")
        finally:
            if owns_client:
                try:
                    client.close(timeout=2)
                except Exception:       # noqa: BLE001 -- the scheduler may be gone
                    pass
        self.summary.interrupted = self._stop.is_set() or len(self.done) < self.n_shards
        self.summary.probes = self.space.size
        self.summary.replies = self.received
        self.summary.sent = sum(self.token_sent.values())
        self.summary.duplicates += self.duplicates
        unanswered = self.space.size - self.received - self.answered_before
        if not self.summary.interrupted and not self.config.list_unanswered and unanswered:
            state = self.space.probes.slots[0][0].no_response
            self.summary.states[state] = self.summary.states.get(state, 0) + unanswered
        # The cluster's rate: the sum of each worker's rate while it sent.
        rate = sum(w["sent"] / w["busy"] for w in self.workers.values() if w["busy"] > 0)
        self.summary.sending = self.summary.sent / rate if rate else 0.0
        self.summary.elapsed = time.monotonic() - began
        return self.summary

    def _run(self, client, sink) -> None:
        from distributed import Event, Queue
        workers = scanner_workers(client)
        if not workers:
            raise EnvironmentFault(f"no scanner workers at {self.address or client.scheduler.address}: "
                             "start `scanner worker ADDR` on the scanning machines")
        self.scan_id = scan_id = uuid.uuid4().hex[:12]
        self.n_shards = n = max(1, min(self.shards_per_worker * len(workers), -(-self.space.size // MIN_SHARD)))
        queue = Queue(queue_name(scan_id), client=client, maxsize=QUEUE_SLOTS)
        stop_event = Event(stop_name(scan_id), client=client)
        cfg = self.config
        futures, tasks = {}, {}
        for s in range(n):
            tasks[s] = ShardTask(scan_id, s, n, self.space.targets, self.space.probes, cfg.seed, self.key,
                                 cfg.retries, cfg.wait, cfg.udp_rounds, cfg.list_unanswered, self.dry_run)
            futures[s] = client.submit(run_shard, tasks[s], key=f"scanner-shard-{scan_id}-{s}",
                                       resources={RESOURCE: 1}, pure=False)
        lost_since = None
        stop_sent_at = None
        # The outputs' thread (Session's BackgroundSink) has a queue: while it is long, take
        # nothing more from the cluster; the scheduler's queue then fills and the workers wait.
        backlog = getattr(getattr(sink, "queue", None), "qsize", lambda: 0)
        try:
            while len(self.done) < n:
                if self._stop.is_set() and stop_sent_at is None:
                    stop_sent_at = time.monotonic()
                    try:
                        stop_event.set()      # running shards stop sending, deliver what they have
                    except Exception:  # noqa: BLE001
                        break
                if stop_sent_at is not None and time.monotonic() - stop_sent_at > cfg.wait + 5:
                    break
                if backlog() > SINK_BACKLOG:
                    time.sleep(0.01)
                    continue
                if client.status != "running":
                    lost_since = lost_since or time.monotonic()
                    if time.monotonic() - lost_since > SCHEDULER_GRACE:
                        raise SchedulerLost()
                    time.sleep(0.1)
                    continue
                try:
                    # No callback_timeout here: a get given up on after the scheduler took the
                    # items would lose them. A scheduler gone fails the call within the connect
                    # timeout (set short in connect()).
                    messages = [queue.get(timeout=0.5)]
                    messages += queue.get(batch=True)
                    lost_since = None
                except Exception:   # noqa: BLE001 -- a timeout, or the scheduler gone
                    if client.status == "running":
                        self._check_failures(futures)
                        if stop_sent_at is None:
                            self._rerun_lost(client, futures, tasks)
                    if stop_sent_at is not None and all(f.done() for f in futures.values()):
                        break
                    continue
                for message in messages:
                    self._handle(client, message, sink)
        except SchedulerLost:
            _quiet_dask(logging.CRITICAL)    # its attempts to reconnect, and their tracebacks
            self.note(f"lost the Dask scheduler at {self.address or 'the cluster'}: stopping")
            self._stop.set()
            return
        finally:
            for f in futures.values():
                if not f.done():
                    try:
                        f.cancel()
                    except Exception:  # noqa: BLE001
                        pass

    def _rerun_lost(self, client, futures, tasks) -> None:
        """A shard whose task finished but whose last message never came (the queue has been
        empty since): run it again; it goes on from its last cursor, repeats are dropped."""
        for s, f in list(futures.items()):
            if f.status == "finished" and s not in self.done:
                self.note(f"shard {s + 1}/{self.n_shards} ended without its last batch: running it again")
                futures[s] = client.submit(run_shard, tasks[s], key=f"scanner-shard-{self.scan_id}-{s}-"
                                           f"{uuid.uuid4().hex[:6]}", resources={RESOURCE: 1}, pure=False)

    def _check_failures(self, futures) -> None:
        for s, f in futures.items():
            if f.status == "error" and s not in self.done:
                error = f.exception()
                if isinstance(error, ScannerError):
                    raise error
                raise EnvironmentFault(f"shard {s + 1} failed on the cluster: {type(error).__name__}: {error}")

    def _handle(self, client, message, sink) -> None:
        kind, shard, token = message[:3]
        if kind == "hello":
            self._go(client, shard, token, message[3])
            return
        cursor, data, stats = message[3:]
        worker = self.token_worker.get(token)
        rows = np.frombuffer(data, dtype=RESULT_DTYPE)
        if len(rows):
            fresh = self._first_seen(rows)
            self.duplicates += len(rows) - len(fresh)
            if len(fresh):
                self.received += len(fresh)
                counts = np.bincount(fresh["state"], minlength=len(STATE_NAMES) + 1)
                for code in np.flatnonzero(counts).tolist():
                    name = STATE_NAMES[code]
                    self.summary.states[name] = self.summary.states.get(name, 0) + int(counts[code])
                sink(fresh)
                if worker:
                    self.workers[worker]["results"] += len(fresh)
        sent, sending = stats.get("sent", 0), stats.get("sending") or 0.0
        if worker:
            w = self.workers[worker]
            w["sent"] += sent - self.token_sent.get(token, 0)
            w["busy"] += sending - self.token_busy.get(token, 0.0)
        self.token_sent[token], self.token_busy[token] = sent, sending
        if self.runs.get(shard) == token and cursor is not None:
            self.cursors[shard] = cursor
        if kind == "done" and shard not in self.done:
            if stats.get("interrupted"):
                return          # stopped on request: not done, the checkpoint has its cursor
            self.done.add(shard)
            self.shard_summaries[shard] = stats
            for name in ("duplicates", "bad_cookie"):
                setattr(self.summary, name, getattr(self.summary, name) + int(stats.get(name) or 0))
            for name in ("pcap_received", "pcap_dropped"):
                if stats.get(name) is not None:
                    setattr(self.summary, name, (getattr(self.summary, name) or 0) + int(stats[name]))

    def _first_seen(self, rows: np.ndarray) -> np.ndarray:
        """The rows whose probe had no result yet (the engine's Tracker without its sort: a
        worker's batch never holds a probe twice, its own tracker saw to that)."""
        index = rows["index"]
        byte = index >> np.uint64(3)
        bit = np.left_shift(np.uint8(1), (index & np.uint64(7)).astype(np.uint8))
        fresh = (self.tracker.bitmap[byte] & bit) == 0
        if not fresh.all():
            rows, byte, bit = rows[fresh], byte[fresh], bit[fresh]
        np.bitwise_or.at(self.tracker.bitmap, byte, bit)
        return rows

    def _go(self, client, shard, token, worker) -> None:
        """A shard's run starts: tell it its rate, and where to go on from if it ran before."""
        from distributed import Variable
        workers = scanner_workers(client)
        info = workers.get(worker, {})
        w = self.workers.setdefault(worker, {"sent": 0, "busy": 0.0, "results": 0, "shards": [], "info": info})
        w["shards"].append(shard)
        rate = self.config.rate / max(1, len(workers)) if self.config.rate else 0.0
        cursor = self.cursors.get(shard)
        if cursor is None and self.resume is not None:
            cursor = (self.resume.attempt, shard)      # a resumed scan: each shard from its start
        answered = self._answered_in(shard) if cursor is not None else np.zeros(0, dtype=np.uint64)
        if shard in self.cursors and cursor is not None:
            self.note(f"shard {shard + 1}/{self.n_shards} resumed on {worker} from pass {cursor[0] + 1} "
                      f"position {cursor[1]} ({len(answered)} of its probes already answered)")
        self.runs[shard] = token
        self.token_worker[token] = worker
        Variable(go_name(self.scan_id, token), client=client).set(
            {"rate": rate, "cursor": cursor, "answered": answered.tobytes()})

    def _answered_in(self, shard) -> np.ndarray:
        """The probes of this shard already answered (walks the shard's part of the permutation)."""
        from dataclasses import replace
        config = replace(self.config, shard=(shard + 1, self.n_shards))
        parts = [ix[self.tracker.answered(ix)] for ix in config.indices(1 << 20)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)

