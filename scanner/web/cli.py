"""`scanner web [--listen 127.0.0.1:8700] [--db PATH]`: serve the GUI until Ctrl-C."""
from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import sys
from typing import List, Optional

import typer

from ..errors import InputError

web_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def parse_listen(text: str) -> tuple:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "8700"
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        port_n = int(port)
    except ValueError:
        raise InputError(f"bad --listen '{text}': expected ADDRESS:PORT, e.g. 127.0.0.1:8700") from None
    if not 0 <= port_n < 65536:
        raise InputError(f"bad --listen '{text}': port must be 0 to 65535")
    return host, port_n


@web_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def web(
    listen: str = typer.Option("127.0.0.1:8700", "--listen", help="ADDRESS:PORT to serve on (only this "
                               "machine by default; another address exposes scanning to that network)."),
    db: Optional[str] = typer.Option(None, "--db", help="The scan database (default: "
                                     "$XDG_DATA_HOME/scanner/scans.db)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="SCANNER_WEB_TOKEN",
                                        help="Use this token rather than a random one (at least 16 characters)."),
    reports: Optional[List[str]] = typer.Option(None, "--reports", help="Where to look for `scanner bench` reports "
                                                "(repeatable; default: bench/reports and every --report "
                                                "directory scanner bench wrote)."),
):
    """A web GUI (like Zenmap): profiles and a command builder, live scans, hosts and ports, host
    details, compare and search saved scans, and the benchmark reports of `scanner bench`. Prints its URL with a random access token."""
    try:
        import uvicorn
        from .app import create_app
        from .bench import Reports
        from .runs import Runs
    except ImportError as e:
        raise InputError(f"scanner web needs the 'web' extra: pip install 'scanner[web]' ({e.name} is missing)") from None
    from ..store import default_path
    host, port = parse_listen(listen)
    if token is not None and len(token) < 16:
        raise InputError("--token must have at least 16 characters")
    token = token or secrets.token_urlsafe(24)
    path = db or str(default_path())
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))     # here rather than in uvicorn: a clear error, and the port of :0
        sock.listen(1024)           # connections wait from the moment the URL is printed
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {listen}: {e.strerror}") from None
    port = sock.getsockname()[1]
    runs = Runs(path)
    app = create_app(path, token, port, runs, Reports(reports or None))
    shown = f"[{host}]" if ":" in host else host
    print(f"scanner web: serving {path} on http://{shown}:{port}/?token={token}", flush=True)
    if not ipaddress.ip_address(host).is_loopback:
        print(f"scanner web: note: listening on {host}: anyone who reaches it with the token can run scans "
              "from this machine", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
                            lifespan="off")
    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            # Ctrl-C / SIGTERM: the scans this server started end as interrupted, their results kept.
            await asyncio.get_running_loop().run_in_executor(None, runs.stop_all)
            await super().shutdown(sockets)

    try:
        Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
