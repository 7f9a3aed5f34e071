"""scanner: nmap's scan techniques and port states at masscan/zmap speed, as a library.

    import scanner
    request = scanner.ScanRequest.from_argv(["192.0.2.0/24", "-p", "22,80"])
    result = scanner.scan(request)
    for row in result.rows():
        print(row["ip"], row["port"], row["state"])

The names below are the public API; everything else is internal. They are imported on first use,
so that `import scanner` (and the command line) stay quick."""
from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.2.0"

__all__ = ["ScanRequest", "Session", "ScanResult", "Checkpoint", "scan", "stream", "events",
           "ScannerError", "InputError", "EnvironmentFault", "__version__"]

_HOMES = {"ScanRequest": "request", "Session": "session", "ScanResult": "session", "scan": "session",
          "stream": "session", "Checkpoint": "resume", "events": None, "ScannerError": "errors",
          "InputError": "errors", "EnvironmentFault": "errors"}

if TYPE_CHECKING:
    from . import events
    from .errors import EnvironmentFault, InputError, ScannerError
    from .request import ScanRequest
    from .resume import Checkpoint
    from .session import ScanResult, Session, scan, stream


def __getattr__(name: str):
    import importlib
    if name not in _HOMES:
        raise AttributeError(f"module 'scanner' has no attribute {name!r}")
    home = _HOMES[name]
    module = importlib.import_module(f".{home or name}", __name__)
    value = module if home is None else getattr(module, name)
    globals()[name] = value
    return value
