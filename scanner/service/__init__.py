"""Service and version detection (-sV): after the port scan, real kernel-socket connections to
every open TCP port (many at once, bounded, with timeouts) read the banner and send probes; open
UDP ports get the UDP probes. Replies are matched against a probe database: our own
(scanner/data/service-probes.txt, a readable format described at its top) or, with --service-db,
a file in nmap's nmap-service-probes format.

The order of work per port follows nmap: the NULL probe (just listen for a banner), then the
probes registered for the port, then the others whose rarity is within --version-intensity; a
soft match narrows the remaining probes to those that can name that service's version; a TLS
answer switches to a TLS connection (certificate read, then the same probes inside the tunnel).

One home each: model (ServiceInfo), probedb (the databases and matching), exchange (talking to
a port), tls (certificate, page title), engine (the concurrent scanner), scripts (the hook where
per-service scripts plug in), post (the session's post-scan stage)."""
from .engine import DEFAULT_INTENSITY, ServiceScanner, service_targets
from .model import ServiceInfo
from .post import PostScan, RowCollector
from .probedb import Match, Probe, ProbeDB, load_db, match_reply, parse_nmap_db, parse_nmap_match, parse_own_db
from .tls import cert_text, http_title, parse_certificate

__all__ = ["DEFAULT_INTENSITY", "ServiceScanner", "service_targets", "ServiceInfo", "PostScan", "RowCollector",
           "Match", "Probe", "ProbeDB", "load_db", "match_reply", "parse_nmap_db", "parse_nmap_match",
           "parse_own_db", "cert_text", "http_title", "parse_certificate"]
