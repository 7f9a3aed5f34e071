"""ScanRequest: one frozen, JSON-serializable description of a scan, and nmap's command language
for it. The option table below is the only place an option is declared: from_argv() (the CLI's
own parser), to_argv(), --help and the JSON field names all come from it, so they cannot drift.

The parser follows nmap rather than a generic option library: value options take their value
glued or as the next word (-p22, -p 22, --rate=5, --rate 5), scan flags combine (-sSV = -sS -sV),
discovery probes carry their ports glued (-PS22,80), and an option nmap has that scanner lacks is
named as such instead of being misread."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Tuple

from .errors import InputError

# -s letters: the TCP technique each selects, or the field it switches on.
TCP_SCAN_LETTERS = {"S": "syn", "T": "connect", "A": "ack", "W": "window", "N": "null", "F": "fin",
                    "X": "xmas", "M": "maimon"}
TCP_SCAN_FLAG = {key: f"-s{letter}" for letter, key in TCP_SCAN_LETTERS.items()}
# -sY / -sZ: the SCTP technique each selects (scanner/protocols/sctp.py).
SCTP_SCAN_LETTERS = {"Y": "init", "Z": "cookie"}
SCTP_SCAN_FLAG = {key: f"-s{letter}" for letter, key in SCTP_SCAN_LETTERS.items()}
# Fields set by a choice among -s letters: field -> (letter -> value).
LETTER_CHOICES = {"tcp_scan": TCP_SCAN_LETTERS, "sctp_scan": SCTP_SCAN_LETTERS}
SEND_PATHS = ("auto", "xdp", "packet")
SCAN_LETTER_FIELDS = {"U": "udp", "V": "version_scan", "n": "ping_only", "L": "list_scan", "O": "ip_scan",
                      "C": "script_scan"}
# nmap's -s letters that scanner does not implement (yet).
SCAN_LETTERS_MISSING = {"I": "idle scan", "R": "RPC scan"}
# nmap options that scanner does not implement: named in the error instead of "unknown option".
NMAP_MISSING = {
    "--min-hostgroup", "--max-hostgroup", "-b", "--badsum", "-f", "--mtu", "-D", "-S",
    "--data", "--data-string", "--ip-options",
    "--spoof-mac", "--proxies",
    "--version-trace", "--max-os-tries", "--privileged", "--unprivileged", "-oS",
    "--stylesheet", "--webxml", "--no-stylesheet", "--datadir", "--send-eth", "--send-ip",
    "--defeat-rst-ratelimit", "--defeat-icmp-ratelimit", "--nsock-engine", "--release-memory",
    "--min-rtt", "-PY", "-PO", "-PM", "--disable-arp-ping", "--discovery-ignore-rst", "--dns-servers",
    "--system-dns", "--resolve-all", "--unique", "-iR", "--exclude-ports",
    "--port-ratio", "--allports", "--noninteractive", "--log-errors", "--deprecated-xml-osclass",
    "--servicedb", "--versiondb",
}


@dataclass(frozen=True)
class Option:
    names: Tuple[str, ...]        # as typed; the first is the canonical one (to_argv, --help)
    field: str                    # the ScanRequest field it sets
    takes: str = "flag"           # flag | value | multi (repeatable, comma lists) | glued (-PS22) | count (-vv)
    help: str = ""
    section: str = "OTHER"
    metavar: str = ""


def _opt(names, fld, takes="flag", help="", section="OTHER", metavar=""):
    return Option(tuple(names.split()), fld, takes, help, section, metavar)


OPTIONS = (
    _opt("-iL", "input_file", "value", "Read targets from a file (- for stdin)", "TARGET SPECIFICATION", "FILE"),
    _opt("--exclude", "exclude", "multi", "Targets to skip (comma-separated)", "TARGET SPECIFICATION", "LIST"),
    _opt("--excludefile", "exclude_file", "value", "Targets to skip, from a file (needed to scan 0.0.0.0/0 "
         "or ::/0; may be /dev/null)", "TARGET SPECIFICATION", "FILE"),
    _opt("--no-default-exclude", "no_default_exclude", "flag", "Scan IANA special-purpose ranges (private, "
         "multicast, ...) inside larger target blocks too", "TARGET SPECIFICATION"),
    _opt("-6", "ipv6", "flag", "Resolve hostnames to IPv6 (IPv6 addresses need no flag)",
         "TARGET SPECIFICATION"),
    _opt("-sL", "list_scan", "flag", "List the targets, send nothing", "HOST DISCOVERY"),
    _opt("-sn", "ping_only", "flag", "Host discovery only, no port scan", "HOST DISCOVERY"),
    _opt("-Pn -PN -P0", "no_ping", "flag", "Skip host discovery: treat every host as up", "HOST DISCOVERY"),
    _opt("-PE", "ping_echo", "flag", "Discovery: ICMP echo", "HOST DISCOVERY"),
    _opt("-PP", "ping_timestamp", "flag", "Discovery: ICMP timestamp", "HOST DISCOVERY"),
    _opt("-PS", "ping_syn", "glued", "Discovery: TCP SYN to these ports (-PS22,80)", "HOST DISCOVERY", "PORTS"),
    _opt("-PA", "ping_ack", "glued", "Discovery: TCP ACK to these ports", "HOST DISCOVERY", "PORTS"),
    _opt("-PU", "ping_udp", "glued", "Discovery: UDP to these ports", "HOST DISCOVERY", "PORTS"),
    _opt("-PR", "ping_arp", "flag", "Discovery: ARP (the default on the local link)", "HOST DISCOVERY"),
    _opt("-n", "no_resolve", "flag", "Never resolve addresses to names (the default)", "HOST DISCOVERY"),
    _opt("-R", "reverse_dns", "flag", "Reverse DNS lookups of the hosts found up", "HOST DISCOVERY"),
    _opt("-sS", "tcp_scan", "flag", "SYN (half-open) scan, the default as root", "SCAN TECHNIQUES"),
    _opt("-sT", "tcp_scan", "flag", "TCP connect scan, the default without root", "SCAN TECHNIQUES"),
    _opt("-sA", "tcp_scan", "flag", "ACK scan: filtered or unfiltered", "SCAN TECHNIQUES"),
    _opt("-sW", "tcp_scan", "flag", "Window scan", "SCAN TECHNIQUES"),
    _opt("-sN", "tcp_scan", "flag", "Null scan (no flags)", "SCAN TECHNIQUES"),
    _opt("-sF", "tcp_scan", "flag", "FIN scan", "SCAN TECHNIQUES"),
    _opt("-sX", "tcp_scan", "flag", "Xmas scan (FIN, PSH, URG)", "SCAN TECHNIQUES"),
    _opt("-sM", "tcp_scan", "flag", "Maimon scan (FIN, ACK)", "SCAN TECHNIQUES"),
    _opt("--scanflags", "scanflags", "value", "Custom TCP flags, e.g. URGPSHFIN", "SCAN TECHNIQUES", "FLAGS"),
    _opt("-sU", "udp", "flag", "UDP scan (with protocol payloads)", "SCAN TECHNIQUES"),
    _opt("-sY", "sctp_scan", "flag", "SCTP INIT scan", "SCAN TECHNIQUES"),
    _opt("-sZ", "sctp_scan", "flag", "SCTP COOKIE-ECHO scan", "SCAN TECHNIQUES"),
    _opt("-sO", "ip_scan", "flag", "IP protocol scan (-p: protocol numbers)", "SCAN TECHNIQUES"),
    _opt("-p", "ports", "value", "Ports: 22,80,1000-2000, - for all, T:/U: per protocol",
         "PORT SPECIFICATION", "PORTS"),
    _opt("--top-ports", "top_ports", "value", "Scan the N most common ports", "PORT SPECIFICATION", "N"),
    _opt("-F", "fast", "flag", "Fast mode: the 100 most common ports", "PORT SPECIFICATION"),
    _opt("-r", "sequential", "flag", "Ports in order (hosts and ports are not randomized)", "PORT SPECIFICATION"),
    _opt("-sV", "version_scan", "flag", "Service/version detection of open ports",
         "SERVICE/VERSION AND OS DETECTION"),
    _opt("--version-intensity", "version_intensity", "value", "-sV: 0 (light) to 9 (all probes)",
         "SERVICE/VERSION AND OS DETECTION", "N"),
    _opt("--version-light", "version_light", "flag", "-sV: --version-intensity 2",
         "SERVICE/VERSION AND OS DETECTION"),
    _opt("--version-all", "version_all", "flag", "-sV: --version-intensity 9", "SERVICE/VERSION AND OS DETECTION"),
    _opt("--service-db", "service_db", "value", "-sV: probes and matches from this file (ours, or "
         "nmap's nmap-service-probes)", "SERVICE/VERSION AND OS DETECTION", "FILE"),
    _opt("-O", "os_scan", "flag", "OS detection from the SYN-ACKs and RSTs seen",
         "SERVICE/VERSION AND OS DETECTION"),
    _opt("--osscan-limit", "osscan_limit", "flag", "-O: only hosts with an open and a closed port",
         "SERVICE/VERSION AND OS DETECTION"),
    _opt("--osscan-guess --fuzzy", "osscan_guess", "flag", "-O: show guesses of low confidence too",
         "SERVICE/VERSION AND OS DETECTION"),
    _opt("--traceroute", "traceroute", "flag", "Trace the hop path to each host after the scan (toward a port "
         "known to answer)", "HOST DISCOVERY"),
    _opt("-A", "aggressive", "flag", "nmap's -A: -sV -O -sC --traceroute", "SERVICE/VERSION AND OS DETECTION"),
    _opt("-sC", "script_scan", "flag", "Scripts: the default set (as nmap's --script=default; turns -sV on)",
         "SCRIPT SCAN"),
    _opt("--script", "scripts", "multi", "Scripts by name, category (default, safe, discovery, version, auth, "
         "all) or pattern (http-*), comma-separated; turns -sV on", "SCRIPT SCAN", "NAMES"),
    _opt("--script-args", "script_args", "value", "Script arguments: name=value,... (smtp-commands.domain, "
         "http.useragent, ftp-anon.maxlist, ...)", "SCRIPT SCAN", "ARGS"),
    _opt("--os-db", "os_db", "value", "-O: nmap's probes matched against this nmap-os-db (default: "
         "/usr/share/nmap/nmap-os-db when installed; 'builtin': scanner's own guess)", "SERVICE/VERSION AND OS DETECTION",
         "FILE"),
    _opt("-A", "aggressive", "flag", "-sV and -O together", "SERVICE/VERSION AND OS DETECTION"),
    _opt("-T", "timing", "value", "Timing template -T0..-T5 (paranoid|sneaky|polite|normal|aggressive|insane)",
         "TIMING AND PERFORMANCE", "0-5"),
    _opt("--rate", "rate", "value", "Fixed packets per second, never exceeded (0: as fast as possible); "
         "without it the pace adapts to the replies", "TIMING AND PERFORMANCE", "PPS"),
    _opt("--min-rate", "min_rate", "value", "Adaptive pace: never slower than this (packets/s)",
         "TIMING AND PERFORMANCE", "PPS"),
    _opt("--max-rate", "max_rate", "value", "Adaptive pace: never faster than this (packets/s)",
         "TIMING AND PERFORMANCE", "PPS"),
    _opt("--max-retries --retries", "retries", "value", "Resends of probes still unanswered",
         "TIMING AND PERFORMANCE", "N"),
    _opt("--wait", "wait", "value", "Seconds to wait for late replies (default: from the round-trip time)",
         "TIMING AND PERFORMANCE", "SECONDS"),
    _opt("--min-rtt-timeout", "min_rtt_timeout", "value", "Probe timeout never below TIME (500ms, 1s, 2m)",
         "TIMING AND PERFORMANCE", "TIME"),
    _opt("--max-rtt-timeout", "max_rtt_timeout", "value", "Probe timeout never above TIME",
         "TIMING AND PERFORMANCE", "TIME"),
    _opt("--initial-rtt-timeout", "initial_rtt_timeout", "value", "Probe timeout before a round trip is measured",
         "TIMING AND PERFORMANCE", "TIME"),
    _opt("--host-timeout", "host_timeout", "value", "Give up on the scan after TIME (as nmap gives up on a host)",
         "TIMING AND PERFORMANCE", "TIME"),
    _opt("--scan-delay", "scan_delay", "value", "At least TIME between probes", "TIMING AND PERFORMANCE", "TIME"),
    _opt("--max-scan-delay", "max_scan_delay", "value", "Adaptive pace: never more than TIME between probes",
         "TIMING AND PERFORMANCE", "TIME"),
    _opt("--min-parallelism", "min_parallelism", "value", "Probes in flight: at least N",
         "TIMING AND PERFORMANCE", "N"),
    _opt("--max-udp-rounds", "max_udp_rounds", "value", "Slower rounds for hosts that rate-limit ICMP "
         "(-sU); 0: none", "TIMING AND PERFORMANCE", "N"),
    _opt("--max-parallelism", "max_parallelism", "value", "Probes in flight (connections for -sT, -sV): at most N",
         "TIMING AND PERFORMANCE", "N"),
    _opt("--seed", "seed", "value", "Seed of the probe order", "SCALE", "N"),
    _opt("--shard", "shard", "value", "K/N: scan this machine's slice K of N", "SCALE", "K/N"),
    _opt("-e --interface", "interface", "value", "Send on this interface", "SCALE", "IF"),
    _opt("--dry-run", "dry_run", "flag", "Print the probes instead of sending them", "SCALE"),
    _opt("--cluster", "cluster", "value", "Run the scan on the workers of this Dask scheduler "
         "(tcp://HOST:8786, tls://...; see docs/cluster.md)", "SCALE", "ADDR"),
    _opt("--ttl", "ttl", "value", "IP time-to-live (IPv6 hop limit) of the probes", "FIREWALL/IDS EVASION AND SPOOFING",
         "N"),
    _opt("--data-length", "data_length", "value", "Append N random bytes to each probe",
         "FIREWALL/IDS EVASION AND SPOOFING", "N"),
    _opt("-g --source-port", "source_port", "value", "Fixed source port of raw TCP/UDP probes (replies "
         "then checked by the sequence cookie alone)", "FIREWALL/IDS EVASION AND SPOOFING", "PORT"),
    _opt("--send-path", "send_path", "value", "auto, xdp (AF_XDP) or packet (sendmmsg); auto: AF_XDP where "
         "the kernel and interface allow it, for stages of 2^17 probes or more", "SCALE", "PATH"),
    _opt("-oN", "normal_out", "value", "nmap's normal output (- for stdout)", "OUTPUT", "FILE"),
    _opt("-oX", "xml_out", "value", "nmap's XML output (- for stdout)", "OUTPUT", "FILE"),
    _opt("-oG", "grepable_out", "value", "nmap's grepable output", "OUTPUT", "FILE"),
    _opt("-oJ", "json_out", "value", "NDJSON results (- for stdout)", "OUTPUT", "FILE"),
    _opt("--csv", "csv_out", "value", "CSV results (- for stdout)", "OUTPUT", "FILE"),
    _opt("-oL", "list_out", "value", "masscan's list format", "OUTPUT", "FILE"),
    _opt("-oB", "binary_out", "value", "masscan's binary format (masscan --readscan reads it)", "OUTPUT", "FILE"),
    _opt("--readscan", "readscan", "value", "Read a masscan binary file (-oB) into the -o outputs; no scan",
         "OUTPUT", "FILE"),
    _opt("-oA", "all_out", "value", "-oN, -oX and -oG to BASENAME.nmap/.xml/.gnmap", "OUTPUT", "BASENAME"),
    _opt("-v", "verbose", "count", "More output (-vv: more still): open ports as found", "OUTPUT"),
    _opt("-d", "debug", "count", "Debugging output (-dd: more): timing decisions", "OUTPUT"),
    _opt("--open", "open_only", "flag", "Only list open (or possibly open) ports, in every output", "OUTPUT"),
    _opt("--reason", "reason", "flag", "Show why each port has its state", "OUTPUT"),
    _opt("--packet-trace", "packet_trace", "flag", "Show every probe sent and reply received", "OUTPUT"),
    _opt("--append-output", "append_output", "flag", "Append to the output files instead of replacing them",
         "OUTPUT"),
    _opt("--iflist", "iflist", "flag", "List interfaces and routes, then exit", "OUTPUT"),
    _opt("--show-all", "show_all", "flag", "List unanswered ports too (all outputs)", "OUTPUT"),
    _opt("--stats-every", "stats_every", "value", "Log a progress line every SECONDS", "OUTPUT", "SECONDS"),
    _opt("-q --quiet", "quiet", "flag", "No notes or summary on stderr", "OUTPUT"),
    _opt("--db", "db", "value", "Record the scan in this SQLite file (default: "
         "$XDG_DATA_HOME/scanner/scans.db)", "OUTPUT", "FILE"),
    _opt("--no-db", "no_db", "flag", "Do not record the scan", "OUTPUT"),
)
BY_NAME = {name: opt for opt in OPTIONS for name in opt.names}
OUTPUT_FIELDS = {"-oJ": "json_out", "-oN": "normal_out", "-oX": "xml_out", "-oG": "grepable_out",
                 "--csv": "csv_out", "-oL": "list_out", "-oB": "binary_out"}


def _number(kind: Callable, name: str, text: Any, low=None, high=None, finite=True):
    """text as kind (int or float) within [low, high], or InputError naming the option."""
    try:
        value = kind(text) if not isinstance(text, bool) else None
        if kind is int and isinstance(text, float) and not text.is_integer():
            value = None
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or (finite and isinstance(value, float) and not math.isfinite(value)):
        raise InputError(f"bad {name} '{text}': expected a{'n integer' if kind is int else ' number'}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}")
        raise InputError(f"bad {name} {value:g}: must be {bounds}")
    return value


# Options that stand for other fields' values (-A: -sV -O; --version-light: --version-intensity 2).
SHORTHANDS = ("aggressive", "version_light", "version_all")
TIMING_NAMES = ("paranoid", "sneaky", "polite", "normal", "aggressive", "insane")
# (field, option, kind, low, high) of the numbers checked when a request is built.
_CHECKED = (
    ("rate", "--rate", float, 0, None), ("min_rate", "--min-rate", float, 0.01, None),
    ("max_rate", "--max-rate", float, 0.01, None), ("wait", "--wait", float, 0, 3600),
    ("retries", "--max-retries", int, 0, 100), ("min_rtt_timeout", "--min-rtt-timeout", float, 0, 3600),
    ("max_rtt_timeout", "--max-rtt-timeout", float, 0.001, 3600),
    ("initial_rtt_timeout", "--initial-rtt-timeout", float, 0.001, 3600),
    ("host_timeout", "--host-timeout", float, 0, None), ("scan_delay", "--scan-delay", float, 0, 3600),
    ("max_scan_delay", "--max-scan-delay", float, 0, 3600),
    ("min_parallelism", "--min-parallelism", int, 1, 100000),
    ("max_parallelism", "--max-parallelism", int, 1, 100000),
    ("stats_every", "--stats-every", float, 0.001, None), ("ttl", "--ttl", int, 1, 255),
    ("data_length", "--data-length", int, 0, 1400), ("source_port", "-g", int, 1, 65535), ("verbose", "-v", int, 0, 10), ("debug", "-d", int, 0, 10),
)
TIME_FIELDS = {"wait", "min_rtt_timeout", "max_rtt_timeout", "initial_rtt_timeout", "host_timeout", "scan_delay",
               "max_scan_delay", "stats_every"}
_TIME_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time(name: str, text: str) -> float:
    """nmap's time values: seconds, or a number with ms, s, m or h (500ms, 1.5s, 2m)."""
    text = str(text).strip().lower()
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[:-len(unit)]:
            return _number(float, name, text[:-len(unit)], 0) * _TIME_UNITS[unit]
    return _number(float, name, text, 0)


def parse_timing(text: str) -> int:
    """-T's value: 0-5 or the template's name."""
    text = str(text).strip().lower()
    if text in TIMING_NAMES:
        return TIMING_NAMES.index(text)
    if text in ("0", "1", "2", "3", "4", "5"):
        return int(text)
    raise InputError(f"bad -T '{text}': 0-5 or {', '.join(TIMING_NAMES)}")


def parse_shard(text: str) -> tuple:
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise InputError(f"bad --shard '{text}': expected K/N, e.g. 1/4") from None
    if not 1 <= k <= n or n > 1 << 40:
        raise InputError(f"bad --shard '{text}': K must be between 1 and N (N at most 2^40)")
    return k, n


@dataclass(frozen=True)
class ScanRequest:
    """Everything a command line can say about a scan. Build it with from_argv() (the CLI's own
    parser), from_json(), or directly; it is checked when built (InputError). Targets and ports
    are kept as written: they are resolved when a Session plans the scan."""
    targets: Tuple[str, ...] = ()
    input_file: Optional[str] = None
    exclude: Tuple[str, ...] = ()
    exclude_file: Optional[str] = None
    no_default_exclude: bool = False
    ipv6: bool = False
    ports: Optional[str] = None
    top_ports: Optional[int] = None
    tcp_scan: Optional[str] = None     # syn, connect, ack, ... (None: SYN as root, else connect)
    scanflags: Optional[str] = None
    udp: bool = False
    sctp_scan: Optional[str] = None    # init (-sY) or cookie (-sZ)
    ip_scan: bool = False              # -sO
    list_scan: bool = False
    ping_only: bool = False
    no_ping: bool = False
    ping_echo: bool = False
    ping_timestamp: bool = False
    ping_syn: Optional[str] = None     # ports; "" for the default port
    ping_ack: Optional[str] = None
    ping_udp: Optional[str] = None
    ping_arp: bool = False
    no_resolve: bool = False
    reverse_dns: bool = False
    fast: bool = False
    sequential: bool = False
    version_scan: bool = False
    version_intensity: int = 7
    service_db: Optional[str] = None
    os_scan: bool = False
    osscan_limit: bool = False
    osscan_guess: bool = False
    script_scan: bool = False          # -sC
    scripts: Tuple[str, ...] = ()      # --script, as typed (comma lists)
    script_args: Optional[str] = None
    traceroute: bool = False
    os_db: Optional[str] = None
    timing: int = 3                    # nmap's -T template; the options below override its values
    rate: Optional[float] = None       # fixed packets/s (0: unlimited); None: the pace adapts
    min_rate: Optional[float] = None
    max_rate: Optional[float] = None
    retries: Optional[int] = None      # None: the template's
    wait: Optional[float] = None       # None: derived from the round-trip time (2 s with --rate)
    min_rtt_timeout: Optional[float] = None     # seconds, as every time below
    max_rtt_timeout: Optional[float] = None
    initial_rtt_timeout: Optional[float] = None
    host_timeout: Optional[float] = None
    scan_delay: Optional[float] = None
    max_scan_delay: Optional[float] = None
    max_udp_rounds: int = 30
    min_parallelism: Optional[int] = None
    max_parallelism: Optional[int] = None
    seed: Optional[int] = None
    shard: Tuple[int, int] = (1, 1)
    interface: Optional[str] = None
    dry_run: bool = False
    # How the scan runs, not what it scans: a checkpoint resumes with another address, or none.
    cluster: Optional[str] = field(default=None, compare=False)
    ttl: Optional[int] = None
    data_length: int = 0
    source_port: Optional[int] = None
    send_path: str = "auto"            # auto, xdp or packet
    normal_out: Optional[str] = None
    xml_out: Optional[str] = None
    grepable_out: Optional[str] = None
    json_out: Optional[str] = None
    csv_out: Optional[str] = None
    list_out: Optional[str] = None
    binary_out: Optional[str] = None
    readscan: Optional[str] = None
    all_out: Optional[str] = None
    verbose: int = 0
    debug: int = 0
    open_only: bool = False
    reason: bool = False
    packet_trace: bool = False
    append_output: bool = False
    iflist: bool = False
    show_all: bool = False
    stats_every: Optional[float] = None
    quiet: bool = False
    db: Optional[str] = None
    no_db: bool = False
    argv: Tuple[str, ...] = field(default=(), compare=False)  # as typed, for output headers

    def __post_init__(self):
        set_ = object.__setattr__
        for name in ("targets", "exclude", "argv", "scripts"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise InputError(f"bad {name}: expected a list of strings")
            set_(self, name, tuple(value))
        shard = self.shard
        set_(self, "shard", parse_shard(shard) if isinstance(shard, str) else
             parse_shard("/".join(map(str, shard))))
        for name, opt_name, kind, low, high in _CHECKED:
            if getattr(self, name) is not None:
                set_(self, name, _number(kind, opt_name, getattr(self, name), low, high))
        if self.timing not in range(6):
            raise InputError(f"bad -T '{self.timing}': 0-5 or {', '.join(TIMING_NAMES)}")
        set_(self, "max_udp_rounds", _number(int, "--max-udp-rounds", self.max_udp_rounds, 0, 1000))
        set_(self, "version_intensity", _number(int, "--version-intensity", self.version_intensity, 0, 9))
        if self.scripts:                   # an unknown script name fails before the scan
            from .service.scripts import select
            select(self.scripts)
        if self.rate is not None and (self.min_rate is not None or self.max_rate is not None):
            raise InputError("--rate is a fixed pace: it takes no --min-rate or --max-rate")
        if self.min_rate and self.max_rate and self.min_rate > self.max_rate:
            raise InputError("--min-rate is above --max-rate")
        if self.min_parallelism and self.max_parallelism and self.min_parallelism > self.max_parallelism:
            raise InputError("--min-parallelism is above --max-parallelism")
        if (self.min_rtt_timeout and self.max_rtt_timeout and self.min_rtt_timeout > self.max_rtt_timeout):
            raise InputError("--min-rtt-timeout is above --max-rtt-timeout")
        if self.no_resolve and self.reverse_dns:
            raise InputError("-n and -R contradict each other")
        if self.fast and (self.ports is not None or self.top_ports is not None):
            raise InputError("-F (the top 100 ports) contradicts -p and --top-ports: choose one")
        if self.list_scan and (self.tcp_scan or self.udp or self.sctp_scan or self.ip_scan or self.ping_only
                               or self.version_scan or self.os_scan or self.script_scan or self.scripts
                               or self.traceroute):
            raise InputError("-sL only lists targets: it takes no scan technique")
        if self.rate and self.rate < 0.01:
            raise InputError(f"bad --rate {self.rate:g}: must be 0 (unlimited) or at least 0.01")
        if self.seed is not None:
            set_(self, "seed", _number(int, "--seed", self.seed, 0, (1 << 64) - 1))
        if self.top_ports is not None:
            set_(self, "top_ports", _number(int, "--top-ports", self.top_ports, 1, 65536))
        if self.send_path not in SEND_PATHS:
            raise InputError(f"bad --send-path '{self.send_path}': one of {', '.join(SEND_PATHS)}")
        if self.tcp_scan is not None and self.tcp_scan not in TCP_SCAN_FLAG:
            raise InputError(f"bad tcp_scan '{self.tcp_scan}': one of {', '.join(TCP_SCAN_FLAG)}")
        if self.db is not None and self.no_db:
            raise InputError("--db and --no-db contradict each other")
        if self.sctp_scan is not None and self.sctp_scan not in SCTP_SCAN_FLAG:
            raise InputError(f"bad sctp_scan '{self.sctp_scan}': one of {', '.join(SCTP_SCAN_FLAG)}")
        if self.ip_scan and (self.tcp_scan or self.udp or self.sctp_scan):
            raise InputError("-sO (IP protocol scan) runs alone in scanner: not with -sS, -sU, -sY, ...")
        if self.ip_scan and self.top_ports is not None:
            raise InputError("-sO takes protocol numbers with -p, not --top-ports")
        if self.ping_only and (self.tcp_scan or self.udp or self.sctp_scan or self.ip_scan):
            raise InputError("-sn is host discovery only: it takes no port scan technique")
        if self.ping_only and self.no_ping:
            raise InputError("-sn and -Pn together leave nothing to do")
        if self.ports is not None and self.top_ports is not None:
            raise InputError("-p and --top-ports contradict each other: choose one")
        if self.cluster is not None:
            if not str(self.cluster).startswith(("tcp://", "tls://")):
                raise InputError(f"bad --cluster '{self.cluster}': expected tcp://HOST:PORT or tls://HOST:PORT")
            if self.shard != (1, 1):
                raise InputError("--shard and --cluster do not go together: the cluster shards the scan itself")
            if (self.tcp_scan == "connect" or self.version_scan or self.os_scan or self.script_scan or self.scripts
                    or self.traceroute):
                raise InputError("--cluster runs the raw scans (-sS, -sA, ..., -sU, discovery): "
                                 "not -sT, -sV, -O, -sC/--script or --traceroute")

    # -- the command line
    @classmethod
    def from_argv(cls, argv) -> "ScanRequest":
        """nmap's command language -> a request; InputError on anything it cannot take."""
        argv = list(argv)
        values: dict = {}
        given: dict = {}            # field -> the option that set it (a second one is an error)
        targets: list = []
        i = 0

        def put(opt_name: str, fld: str, value) -> None:
            if fld in given and values[fld] != value:
                if fld in LETTER_CHOICES:
                    raise InputError(f"choose one {'TCP' if fld == 'tcp_scan' else 'SCTP'} scan technique, "
                                     f"not {given[fld]} and {opt_name}")
                raise InputError(f"{opt_name} given twice: only one is allowed, as in nmap")
            given[fld] = opt_name
            values[fld] = value

        while i < len(argv):
            arg = argv[i]
            i += 1
            if arg == "--":
                targets += argv[i:]
                break
            if not arg.startswith("-") or arg == "-":
                targets.append(arg)
                continue
            name, glued = arg, None
            if arg.startswith("--") and "=" in arg:
                name, glued = arg.split("=", 1)
            opt = BY_NAME.get(name)
            counted = re.fullmatch(r"-([vd])(\1*|[0-9])", arg)
            if counted:                                        # -v, -vv, -v2, -d, -dd, -d3
                letter, more = counted.groups()
                fld = "verbose" if letter == "v" else "debug"
                values[fld] = values.get(fld, 0) + (int(more) if more.isdigit() else 1 + len(more))
                given[fld] = f"-{letter}"
                continue
            if opt is None and not arg.startswith("--"):
                if arg.startswith("-s") and len(arg) > 2:        # combined scan flags: -sSV, -sSU
                    for letter in arg[2:]:
                        if letter in TCP_SCAN_LETTERS:
                            put(f"-s{letter}", "tcp_scan", TCP_SCAN_LETTERS[letter])
                        elif letter in SCTP_SCAN_LETTERS:
                            put(f"-s{letter}", "sctp_scan", SCTP_SCAN_LETTERS[letter])
                        elif letter in SCAN_LETTER_FIELDS:
                            put(f"-s{letter}", SCAN_LETTER_FIELDS[letter], True)
                        elif letter in SCAN_LETTERS_MISSING:
                            raise InputError(f"scanner does not implement -s{letter} "
                                             f"({SCAN_LETTERS_MISSING[letter]})")
                        else:
                            raise InputError(f"unknown scan type -s{letter} in '{arg}' (see scanner --help)")
                    continue
                for length in (3, 2):                          # a value glued to a short option
                    opt = BY_NAME.get(arg[:length])
                    if opt is not None and opt.takes in ("value", "glued"):
                        name, glued = arg[:length], arg[length:]
                        break
                else:
                    opt = None
            if opt is None:
                if name in NMAP_MISSING or name[:3] in ("-T0", "-T1", "-T2", "-T3", "-T4", "-T5"):
                    raise InputError(f"scanner does not implement nmap's {name}")
                raise InputError(f"no such option: {name} (see scanner --help)")
            if opt.takes == "flag":
                if glued is not None:
                    raise InputError(f"{name} takes no value")
                put(name, opt.field, LETTER_CHOICES[opt.field][name[2]] if opt.field in LETTER_CHOICES else True)
                continue
            if opt.takes == "glued":
                put(name, opt.field, glued or "")
                continue
            if glued is None:
                if i >= len(argv):
                    raise InputError(f"{name} needs a value: {name} {opt.metavar}")
                glued = argv[i]
                i += 1
            if opt.takes == "multi":
                values[opt.field] = values.get(opt.field, ()) + (glued,)
                given[opt.field] = name
            else:
                put(name, opt.field, glued)
        if values.pop("aggressive", False):
            values["version_scan"] = values["os_scan"] = values["script_scan"] = values["traceroute"] = True
        for flag, intensity in (("version_light", 2), ("version_all", 9)):
            if values.pop(flag, False):
                put(f"--{flag.replace('_', '-')}", "version_intensity", intensity)
        bounds: dict = {fld: (kind, low, high) for fld, _, kind, low, high in _CHECKED}
        bounds.update(seed=(int, None, None), top_ports=(int, None, None), version_intensity=(int, None, None),
                      max_udp_rounds=(int, None, None))
        for fld, value in values.items():
            if fld == "timing":
                values[fld] = parse_timing(value)
            elif fld in TIME_FIELDS:
                values[fld] = parse_time(given[fld], value)
            elif fld in bounds and isinstance(value, str):
                kind, low, high = bounds[fld]
                values[fld] = _number(kind, given[fld], value, low, high)
        return cls(targets=tuple(targets), argv=tuple(argv), **values)

    def to_argv(self) -> list:
        """The command line that from_argv() reads back as this request."""
        out: list = []
        defaults = ScanRequest()
        for opt in OPTIONS:
            if opt.field in SHORTHANDS:
                continue
            value = getattr(self, opt.field)
            if opt.field in LETTER_CHOICES:
                flags = TCP_SCAN_FLAG if opt.field == "tcp_scan" else SCTP_SCAN_FLAG
                if value is not None and flags[value] == opt.names[0]:
                    out.append(opt.names[0])
                continue
            if value == getattr(defaults, opt.field):
                continue
            if opt.takes == "flag":
                out.append(opt.names[0])
            elif opt.takes == "count":
                out += [opt.names[0]] * value
            elif opt.field == "timing":
                out.append(f"-T{value}")
            elif opt.takes == "glued":
                out.append(opt.names[0] + value)
            elif opt.takes == "multi":
                for v in value:
                    out += [opt.names[0], v]
            elif opt.field == "shard":
                out += [opt.names[0], f"{value[0]}/{value[1]}"]
            else:
                out += [opt.names[0], f"{value:g}" if isinstance(value, float) else str(value)]
        return out + (["--"] if any(t.startswith("-") for t in self.targets) else []) + list(self.targets)

    def command_line(self) -> str:
        """The command as the user typed it (or as to_argv() writes it), for headers and the store."""
        return " ".join(["scanner", *map(shlex.quote, self.argv or self.to_argv())])

    # -- JSON
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text) -> "ScanRequest":
        try:
            doc = json.loads(text) if isinstance(text, (str, bytes)) else text
        except ValueError as e:
            raise InputError(f"a scan request must be a JSON object ({e})") from None
        if not isinstance(doc, dict):
            raise InputError("a scan request must be a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - set(known))
        if unknown:
            raise InputError(f"unknown scan request field(s): {', '.join(unknown)}")
        for name, value in doc.items():
            if isinstance(value, list):
                doc[name] = tuple(value)
            elif known[name].type in ("bool",) and not isinstance(value, bool):
                raise InputError(f"bad {name}: expected true or false")
        return cls(**doc)

    # -- derived
    @property
    def outputs(self) -> dict:
        """{option: path or None} of the file outputs."""
        return {opt: getattr(self, fld) for opt, fld in OUTPUT_FIELDS.items()}


def help_text() -> str:
    """scanner --help, in sections as nmap's is."""
    lines = ["scanner: nmap's scan techniques and port states at masscan/zmap speed",
             "Usage: scanner [Scan Type(s)] [Options] {target specification}",
             "       scanner --resume FILE | scanner COMMAND ... (lab, history, show, diff, web, worker, bench; each has --help)",
             ""]
    sections: dict = {}
    for opt in OPTIONS:
        sections.setdefault(opt.section, []).append(opt)
    sections["TARGET SPECIFICATION"].insert(0, Option(("TARGETS",), "targets", help="Addresses, CIDR "
                                            "blocks, ranges, octet patterns (198.51.100.*, .1,3,5, "
                                            "0-3.1-10), hostnames, IPv6 addresses and prefixes"))
    for section, opts in sections.items():
        lines.append(f"{section}:")
        for opt in opts:
            names = ", ".join(opt.names) + (f" {opt.metavar}" if opt.takes in ("value", "multi") else
                                            f"[{opt.metavar}]" if opt.takes == "glued" else "")
            lines.append(f"  {names:<28} {opt.help}")
        lines.append("")
    lines += ["PAUSE AND RESUME:",
              "  Ctrl-C (or SIGTERM) stops the scan, keeps every result and writes scanner-resume.json;",
              "  --resume FILE                goes on from where it stopped", "",
              "EXAMPLES:",
              "  scanner 192.0.2.0/24 -p 22,80,443",
              "  scanner -sSV -p- 192.0.2.7 -oA audit",
              "  scanner 198.51.100.0/22 -Pn -p 80 --rate 100000 -oJ results.ndjson",
              "  scanner -T4 -F -v --open 192.0.2.0/24",
              "  scanner history; scanner show last -f xml; scanner diff 3 4",
              "  source <(scanner --completion bash)"]
    return "\n".join(lines) + "\n"
