"""The concurrent -sV engine: many ports at once (bounded), each worked through nmap's order of probes."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Optional

from .exchange import tcp_exchange, tls_context, udp_exchange
from .model import ServiceInfo
from .probedb import ProbeDB, load_db, match_reply
from .scripts import PortFacts, run_scripts
from .tls import http_title, parse_certificate

DEFAULT_INTENSITY = 7
NULL_WAIT = 3.0          # seconds to wait for a banner when no probe is registered for the port
NULL_WAIT_CLIENT = 1.0   # ... when one is (the client probably speaks first: HTTP, TLS, ...)
PROBE_WAIT = 3.0         # cap on a probe's wait for its answer
PORT_DEADLINE = 40.0     # at most this long per port, however many probes remain


class ServiceScanner:
    """Runs -sV over many ports at once: scan(ports) -> {(addr, proto, port): ServiceInfo}."""

    def __init__(self, db: Optional[ProbeDB] = None, intensity: int = DEFAULT_INTENSITY,
                 concurrency: int = 128, null_wait: float = NULL_WAIT, probe_wait: float = PROBE_WAIT,
                 port_deadline: float = PORT_DEADLINE, scripts: Optional[frozenset] = None,
                 script_args: Optional[dict] = None, verbose: int = 0, named: frozenset = frozenset()):
        self.db = db or load_db()
        # scripts.select(): the scripts asked for (-sC, --script), None for plain -sV's
        self.scripts, self.script_args, self.verbose = scripts, dict(script_args or {}), verbose
        self.named = named           # scripts.named(): those --script named (nmap's verbosity boost)
        self.intensity = intensity
        self.concurrency = concurrency
        self.null_wait, self.probe_wait, self.port_deadline = null_wait, probe_wait, port_deadline
        self.total = self.done = self.found = 0
        self.started = 0.0
        self.results: dict = {}
        self._lock = threading.Lock()
        self.on_warning: Callable[[str], None] = lambda text: None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._task: Optional[asyncio.Task] = None
        self.stopped = False

    # -- one TCP port
    async def tcp_port(self, host: str, port: int, facts: Optional[PortFacts] = None) -> Optional[ServiceInfo]:
        """The service on a TCP port (None: nothing matched); facts (for the scripts) filled on the way."""
        facts = facts if facts is not None else PortFacts(host, port, "tcp")
        db = self.db
        ctx = None
        soft = None
        cert = None
        title = None
        started = time.monotonic()
        tunnel = ""
        ssl_seen = None          # the "ssl" match that sent us into TLS
        while True:
            null = db.null("tcp")
            order = db.ordered("tcp", port, self.intensity, tls=ctx is not None)
            registered = any(port in (p.sslports if ctx else p.ports) for p in order)
            steps = ([null] if null is not None else []) + order
            restart = False
            for probe in steps:
                if time.monotonic() - started > self.port_deadline:
                    break
                only = None
                if soft is not None:
                    only = {soft.name}
                    if probe.name != "NULL" and not ({soft.name} & probe.services()):
                        continue
                if probe.name == "NULL":
                    wait = min(probe.wait, NULL_WAIT_CLIENT if registered else self.null_wait)
                else:
                    wait = min(probe.wait, self.probe_wait)

                def done(data, probe=probe, only=only):
                    return match_reply(db, probe, data, only)[0] is not None

                ex = await tcp_exchange(host, port, probe.payload, wait, ctx, done)
                if ex.refused:
                    if ctx is not None and cert is None:      # TLS handshake failed: plain after all
                        ctx, tunnel = None, ""
                    break
                if ex.cert and cert is None:
                    try:
                        cert = parse_certificate(ex.cert)
                    except (IndexError, ValueError):
                        cert = {}
                if probe.name == "NULL" and not ex.data and ex.closed and ex.elapsed < 2.0 and ctx is None:
                    return ServiceInfo("tcpwrapped", conf=8)
                if not ex.data:
                    continue
                title = title or http_title(ex.data)
                facts.replies.setdefault(probe.name, ex.data)
                hard, s = match_reply(db, probe, ex.data, only)
                if hard is not None and hard.name in ("ssl", "tls") and ctx is None and not hard.tunnel:
                    ssl_seen = hard
                    ctx, tunnel, restart = tls_context(), "ssl", True     # look inside the tunnel
                    soft = None
                    break
                if hard is not None:
                    if tunnel:
                        hard.tunnel = "ssl"
                    return self._finish(hard, facts, cert, title)
                if s is not None and soft is None:
                    soft = s
            if not restart:
                break
        if soft is not None:
            if tunnel:
                soft.tunnel = "ssl"
            return self._finish(soft, facts, cert, title)
        if tunnel or ssl_seen is not None:
            return self._finish(ssl_seen or ServiceInfo("ssl", conf=10), facts, cert, title)
        self._finish(None, facts, cert, title)
        return None

    @staticmethod
    def _finish(info: Optional[ServiceInfo], facts: PortFacts, cert, title) -> Optional[ServiceInfo]:
        """What probing learned, kept for the scripts (scripts.py), which run once the port is named."""
        facts.cert, facts.title = cert or None, title
        return info

    # -- one UDP port
    async def udp_port(self, host: str, port: int) -> Optional[ServiceInfo]:
        started = time.monotonic()
        soft = None
        # First the -sU payload that made the port answer: its reply goes through every UDP match.
        from ..techniques import udp_payloads
        payload = udp_payloads().get(port)
        if payload is not None:
            data = await udp_exchange(host, port, payload, self.probe_wait)
            if data:       # matched like the answer of the probes registered for this port
                for probe in [p for p in self.db.probes if p.proto == "udp" and port in p.ports]:
                    hard, s = match_reply(self.db, probe, data)
                    if hard is not None:
                        return hard
                    soft = soft or s
        for probe in self.db.ordered("udp", port, self.intensity):
            if time.monotonic() - started > self.port_deadline:
                break
            if soft is not None and soft.name not in probe.services():
                continue
            data = await udp_exchange(host, port, probe.payload, min(probe.wait, self.probe_wait))
            if not data:
                continue
            hard, s = match_reply(self.db, probe, data, None if soft is None else {soft.name})
            if hard is not None:
                return hard
            soft = soft or s
        return soft

    # -- all of them
    async def _run(self, targets: list) -> dict:
        sem = asyncio.Semaphore(self.concurrency)
        results = self.results = {}        # filled as ports finish: kept if the run is interrupted

        async def one(addr, proto, port):
            async with sem:
                facts = PortFacts(addr, port, proto, args=self.script_args, active=self.scripts is not None,
                                  verbose=self.verbose, named=self.named)
                try:
                    info = await (self.tcp_port(addr, port, facts) if proto == "tcp" else self.udp_port(addr, port))
                except Exception as e:      # noqa: BLE001 - one odd server must not end the scan
                    info = None
                    self.on_warning(f"service scan of {addr}:{port}/{proto} failed: {e!r}")
                if info is None:         # as nmap: the services table's name, with a question mark
                    from ..ports import service_name
                    info = ServiceInfo(service_name(port, proto), method="table", conf=3, guess=True)
                try:           # the scripts, on every port as nmap's (by the name -sV or the table gave)
                    info = await run_scripts(info, facts, self.scripts)
                except Exception as e:      # noqa: BLE001 - nor may one script
                    self.on_warning(f"scripts on {addr}:{port}/{proto} failed: {e!r}")
            with self._lock:
                self.done += 1
                if not info.guess:
                    self.found += 1
            results[(addr, proto, port)] = info

        await asyncio.gather(*(one(*t) for t in targets))
        return results

    def scan(self, targets) -> dict:
        """targets: [(addr, proto, port)]; ports in the database's Exclude list are skipped.
        After stop() (any thread), returns the ports done so far."""
        targets = [t for t in targets if t[2] not in self.db.excluded]
        self.total, self.done, self.found = len(targets), 0, 0
        self.started = time.monotonic()
        raise_fd_limit(self.concurrency * 2 + 64)
        return asyncio.run(self._main(targets)) if targets and not self.stopped else {}

    async def _main(self, targets: list) -> dict:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.ensure_future(self._run(targets))
        try:
            return await self._task
        except asyncio.CancelledError:
            return dict(self.results)

    def stop(self) -> None:
        self.stopped = True
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:        # the loop has closed: the scan is over anyway
                pass

    def progress(self) -> dict:
        return {"done": self.done, "total": self.total, "found": self.found,
                "elapsed": time.monotonic() - self.started}


def raise_fd_limit(want: int) -> None:
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    except (ImportError, ValueError, OSError):
        pass


def service_targets(rows) -> list:
    """[(addr, proto, port)] of the open TCP ports and answering UDP ports among RESULT_DTYPE rows."""
    from ..states import STATES, addresses
    mask = rows["state"] == STATES["open"]
    rows = rows[mask]
    seen, out = set(), []
    for addr, proto, port in zip(addresses(rows), rows["proto"].tolist(), rows["port"].tolist()):
        key = (addr, "tcp" if proto == 6 else "udp" if proto == 17 else None, port)
        if key[1] and key not in seen:
            seen.add(key)
            out.append(key)
    return out
