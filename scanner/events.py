"""What a running Session tells its caller: small dataclasses, each with a `kind`. The CLI renders
them on the terminal, the web GUI sends them as Server-Sent Events, the cluster coordinator and
Python users consume them directly. The library itself prints nothing."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class Event:
    kind = "event"


@dataclass
class ScanStarted(Event):
    """Before the first probe: the store's record (None with --no-db) and the command."""
    scan_id: Optional[int]
    command: str
    kind = "scan-started"


@dataclass
class StageStarted(Event):
    """A stage begins: "discovery", "raw" (the raw techniques in one pass), "connect", "os-probe"
    or "service"."""
    stage: str
    hosts: int = 0
    probes: int = 0
    kind = "stage-started"


@dataclass
class HostsUp(Event):
    """Hosts found up by discovery: RESULT_DTYPE rows with state "up", one per host."""
    rows: np.ndarray
    replayed: bool = False          # rows an interrupted run had already reported (on resume)
    kind = "hosts-up"


@dataclass
class PortResults(Event):
    """A batch of port results (RESULT_DTYPE rows), as the engine produces them."""
    rows: np.ndarray
    replayed: bool = False
    kind = "port-results"


@dataclass
class Progress(Event):
    """A snapshot of the running stage: {"sent", "total", "replies", "open"} for packet stages,
    {"done", "total", "found"} for the service scan."""
    stage: str
    snapshot: dict
    elapsed: float
    kind = "progress"


@dataclass
class Note(Event):
    text: str
    kind = "note"


@dataclass
class Warning(Event):       # noqa: A001 - the event's name; Python's builtin is not needed here
    """Something went wrong but the scan goes on (e.g. one port's service probe failed)."""
    text: str
    kind = "warning"


@dataclass
class StageEnded(Event):
    """A stage ends, with its summary (engine.ScanSummary) and what it covered."""
    stage: str
    summary: Any
    hosts: int = 0
    slots: int = 0
    up: Optional[int] = None        # discovery: hosts found up
    kind = "stage-ended"


@dataclass
class Details(Event):
    """-sV's {(addr, proto, port): ServiceInfo}, -O's {addr: OsGuess}, -R's {addr: name}
    (None: not part of this event)."""
    services: Optional[dict] = field(default_factory=dict)
    os_guesses: Optional[dict] = field(default_factory=dict)
    names: Optional[dict] = None
    traces: Optional[dict] = None                    # --traceroute: {addr: Trace}
    kind = "details"


@dataclass
class DryRun(Event):
    """--dry-run: the probes that would be sent, in order, as "address port" lines."""
    text: str
    kind = "dry-run"


@dataclass
class Listed(Event):
    """-sL: targets as nmap lists them ("Nmap scan report for ..." lines), a chunk at a time."""
    text: str
    kind = "list-scan"


@dataclass
class Packet(Event):
    """--packet-trace: one probe sent ("SENT") or reply received ("RCVD"), seconds into the stage."""
    direction: str
    elapsed: float
    text: str
    kind = "packet"


@dataclass
class Debug(Event):
    """-d: a timing decision or measurement (level 1 and up)."""
    text: str
    level: int = 1
    kind = "debug"


@dataclass
class Finished(Event):
    """The scan is over (complete, interrupted or failed): the result."""
    result: Any
    kind = "finished"
