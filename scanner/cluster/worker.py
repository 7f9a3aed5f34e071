"""`scanner worker tcp://HOST:8786`: a Dask worker that runs scan shards.

A plain distributed.Worker, started here rather than by `dask worker` so that it carries
scanner's plugin: the plugin holds what this machine sends with (interface, source address,
maximum rate) and advertises it to the scheduler through the worker's heartbeat metrics, where
the coordinator reads it. The worker offers one unit of the resource "scanner": shards run one
at a time per machine, each at its share of the scan's rate. If the scheduler goes away the
worker keeps trying to reach it again (as Dask's nanny would), so a restarted scheduler finds it.
"""
from __future__ import annotations

import asyncio
import os
import sys
from typing import Optional

import typer

from ..errors import EnvironmentFault, InputError

PLUGIN_NAME = "scanner"
RESOURCE = "scanner"          # tasks that send probes ask for one unit of it
RECONNECT_DELAY = 0.5         # seconds between attempts to reach a scheduler that went away

worker_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _plugin_class():
    from distributed.diagnostics.plugin import WorkerPlugin

    class ScannerPlugin(WorkerPlugin):
        """What this worker scans with, and how much of it is running right now."""
        name = PLUGIN_NAME
        idempotent = True

        def __init__(self, interface: Optional[str] = None, max_rate: float = 0.0):
            self.interface = interface
            self.max_rate = max_rate
            self.source = interface_address(interface) if interface else None
            self.live: dict = {}               # running shard -> its progress snapshot

        def setup(self, worker):
            self.worker = worker

        def info(self) -> dict:
            """Advertised through the heartbeat (msgpack-able values only)."""
            sent = sum(s.get("sent", 0) for s in self.live.values())
            return {"interface": self.interface or "", "source": self.source or "",
                    "max_rate": self.max_rate, "pid": os.getpid(), "shards": sorted(self.live), "sent": sent}

    return ScannerPlugin


def interface_address(ifname: str) -> str:
    """The first IPv4 (else IPv6) address of an interface; InputError if it has none or is unknown."""
    from ..netinfo import _ip_json
    try:
        info = _ip_json("addr", "show", "dev", ifname)
    except InputError:
        raise InputError(f"no interface named '{ifname}'") from None
    addrs = [a for link in info for a in link.get("addr_info", []) if a.get("scope") == "global"]
    addrs.sort(key=lambda a: a.get("family") != "inet")
    if not addrs:
        raise InputError(f"interface '{ifname}' has no address to scan from")
    return addrs[0]["local"]


def security_from(ca_file, cert, key, address: str):
    """Dask Security for tls:// addresses: the files given, else Dask's own configuration
    (distributed.comm.tls.* in ~/.config/dask or DASK_DISTRIBUTED__COMM__TLS__* variables)."""
    from distributed.security import Security
    if not any((ca_file, cert, key)):
        return Security()
    if not all((ca_file, cert, key)):
        raise InputError("--tls-ca-file, --tls-cert and --tls-key go together")
    for path in (ca_file, cert, key):
        if not os.path.exists(path):
            raise InputError(f"cannot read '{path}'")
    if not address.startswith("tls://"):
        raise InputError("TLS files given, but the scheduler address is not tls://")
    return Security(tls_ca_file=ca_file, tls_worker_cert=cert, tls_worker_key=key,
                    tls_client_cert=cert, tls_client_key=key, require_encryption=True)


async def serve(address: str, plugin, security, name: Optional[str], stop: asyncio.Event,
                once: bool = False) -> None:
    """Runs a worker until stop is set; a worker closed by a lost scheduler is started again."""
    from distributed import Worker
    while not stop.is_set():
        worker = Worker(address, nthreads=1, resources={RESOURCE: 1}, plugins=(plugin,), security=security,
                        name=name, metrics={PLUGIN_NAME: lambda w: plugin.info()}, death_timeout=None,
                        dashboard=False)
        await worker
        finished = asyncio.ensure_future(worker.finished())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([finished, stopped], return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set() or once:
            await worker.close()
            return
        stopped.cancel()
        print(f"scanner worker: lost the scheduler at {address}; reconnecting", file=sys.stderr, flush=True)
        await _until_listening(address, stop)


async def _until_listening(address: str, stop: asyncio.Event) -> None:
    """Waits until something accepts connections at the scheduler's address (quicker than a
    Worker's own back-off, which grows to several seconds between attempts)."""
    from distributed.comm.addressing import get_address_host_port
    host, port = get_address_host_port(address)
    while not stop.is_set():
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), RECONNECT_DELAY)
            writer.close()
            return
        except (OSError, asyncio.TimeoutError):
            try:
                await asyncio.wait_for(stop.wait(), RECONNECT_DELAY)
            except asyncio.TimeoutError:
                pass


@worker_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def worker(
    scheduler: str = typer.Argument(..., help="The Dask scheduler: tcp://HOST:8786 or tls://HOST:8786."),
    interface: Optional[str] = typer.Option(None, "-e", "--interface",
                                            help="Send probes on this interface (default: the route to the targets)."),
    max_rate: float = typer.Option(0.0, "--max-rate", help="At most this many packets per second "
                                   "from this machine, whatever the scan's rate (0: no limit)."),
    name: Optional[str] = typer.Option(None, "--name", help="This worker's name in the cluster."),
    tls_ca_file: Optional[str] = typer.Option(None, "--tls-ca-file", help="CA certificate (tls://)."),
    tls_cert: Optional[str] = typer.Option(None, "--tls-cert", help="This worker's certificate (tls://)."),
    tls_key: Optional[str] = typer.Option(None, "--tls-key", help="Its private key (tls://)."),
):
    """Run scan shards for a coordinator (scanner TARGETS --cluster ADDR), as a Dask worker.

    Start Dask's scheduler first (dask scheduler), then one scanner worker per scanning machine,
    as root. With a tls:// scheduler, give the TLS files here or in Dask's configuration."""
    import signal
    if not (scheduler.startswith("tcp://") or scheduler.startswith("tls://")):
        raise InputError(f"bad scheduler address '{scheduler}': expected tcp://HOST:PORT or tls://HOST:PORT")
    if max_rate < 0:
        raise InputError(f"bad --max-rate {max_rate:g}: must be 0 (no limit) or positive")
    if os.geteuid() != 0:
        raise InputError("a scanner worker sends raw packets and needs root")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise EnvironmentFault("the cluster needs Dask: pip install 'scanner[cluster]'") from None
    security = security_from(tls_ca_file, tls_cert, tls_key, scheduler)
    plugin = _plugin_class()(interface, max_rate)

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"scanner worker: serving {scheduler} (interface {interface or 'by route'}, "
              f"max rate {max_rate:g})", file=sys.stderr, flush=True)
        await serve(scheduler, plugin, security, name, stop)

    asyncio.run(main())
