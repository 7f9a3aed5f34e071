"""The hook where per-service scripts plug in (scanner's answer to NSE, in Python): a script
declares the services it runs on and returns the text nmap would print under the port
(`| name: ...`). Scripts run inside the -sV engine, right after a port is identified, with what
was learned while probing (certificate, page title, banner) and the engine's own exchanges for
talking to the port again. Registering one is one call: register(Script(...))."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, Dict, Optional

from .model import ServiceInfo
from .tls import cert_text


@dataclass
class PortFacts:
    """What the engine learned about one port while identifying it."""
    host: str
    port: int
    proto: str
    cert: Optional[dict] = None         # the TLS certificate, parsed (tls.parse_certificate)
    title: Optional[str] = None         # the first HTML <title> seen
    banners: list = field(default_factory=list)   # raw replies, in order


@dataclass(frozen=True)
class Script:
    name: str                                            # nmap's script id (ssl-cert, http-title)
    applies: Callable[[ServiceInfo, PortFacts], bool]    # does it run on this port?
    run: Callable[[ServiceInfo, PortFacts], Awaitable[Optional[str]]]
    default: bool = True                                 # part of the default set


SCRIPTS: Dict[str, Script] = {}


def register(script: Script) -> Script:
    SCRIPTS[script.name] = script
    return script


async def run_scripts(info: ServiceInfo, facts: PortFacts, names=None) -> ServiceInfo:
    """Runs the scripts that apply to an identified port (the default set, or those named) and
    keeps their output in info.scripts."""
    for script in SCRIPTS.values():
        if (script.name in names if names is not None else script.default) and script.applies(info, facts):
            text = await script.run(info, facts)
            if text:
                info.scripts[script.name] = text
    return info


async def _ssl_cert(info: ServiceInfo, facts: PortFacts) -> Optional[str]:
    return cert_text(facts.cert) if facts.cert else None


async def _http_title(info: ServiceInfo, facts: PortFacts) -> Optional[str]:
    return facts.title


register(Script("ssl-cert", lambda info, facts: bool(facts.cert), _ssl_cert))
register(Script("http-title", lambda info, facts: bool(facts.title) and info.name.startswith("http"),
                _http_title))
