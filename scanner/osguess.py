"""OS guess (-O) from what the port scan already saw: the SYN-ACK of an open port (initial TTL,
window, MSS, window scale, option order, DF) and the RST of a closed one, scored against our
signature file (scanner/data/os-signatures.txt, format described at its top). Service detection
can add its word too: a banner naming the OS (OpenSSH's "Debian", IIS...) agrees or not."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

DEFAULT_SIGNATURES = Path(__file__).resolve().parent / "data" / "os-signatures.txt"
OPTION_LETTERS = {0: "E", 1: "N", 2: "M", 3: "W", 4: "S", 8: "T"}
INITIAL_TTLS = (32, 64, 128, 255)
# How much each piece of evidence weighs.
WEIGHTS = {"ttl": 25, "options": 30, "window": 20, "wscale": 10, "df": 5, "rst_window": 5, "rst_ttl": 5}
SHOW_ABOVE = 50          # accuracy below which a signature is not listed
GUESS_ABOVE = 20         # --osscan-guess: nmap guesses more aggressively, down to here
MAX_MATCHES = 3
FAMILY_OS_NAMES = {"Linux": ("linux", "debian", "ubuntu", "unix"), "Windows": ("windows",),
                   "BSD": ("freebsd", "openbsd", "netbsd", "mac os", "macos", "ios", "bsd"),
                   "IOS": ("ios",)}


@dataclass
class Fingerprint:
    """What one host's replies said, for the OS guess."""
    ttl: int = 0
    window: int = 0
    mss: int = 0
    wscale: int = -1            # -1: no window scale option
    options: str = ""          # "M,S,T,N,W"
    df: int = 0
    port: int = 0               # the open port whose SYN-ACK this is
    rst_ttl: int = 0            # 0: no RST seen
    rst_window: int = -1
    rst_df: int = 0
    closed_port: int = 0

    @property
    def initial_ttl(self) -> int:
        return initial_ttl(self.ttl)

    def to_dict(self) -> dict:
        d = {"ttl": self.ttl, "initial_ttl": self.initial_ttl, "window": self.window, "mss": self.mss,
             "wscale": None if self.wscale < 0 else self.wscale, "options": self.options, "df": bool(self.df),
             "port": self.port}
        if self.rst_ttl:
            d.update(rst_ttl=self.rst_ttl, rst_window=self.rst_window, closed_port=self.closed_port)
        return d


@dataclass
class Signature:
    name: str
    family: str
    vendor: str
    osgen: str
    type: str
    ttl: int
    windows: list
    options: str
    wscale: Optional[set]       # None: any; empty set: no option
    df: Optional[int]
    rst_window: Optional[int]
    cpe: str = ""


@dataclass
class OsGuess:
    """One host's OS guess (nmap's <osmatch>/<osclass>)."""
    name: str
    accuracy: int
    family: str
    vendor: str
    osgen: str = ""
    type: str = ""
    cpes: list = field(default_factory=list)
    fingerprint: Optional[Fingerprint] = None
    others: list = field(default_factory=list)   # further (name, accuracy, family, vendor, osgen, type, cpe)
    # -O with nmap's database (scanner/osprobe.py): nmap's <osmatch> list ([{name, accuracy, line,
    # classes: [{type, vendor, osfamily, osgen, accuracy, cpe}]}]), <portused> (state, proto, port),
    # nmap's normal-output lines, the observed fingerprint and the hop distance.
    matches: Optional[list] = None
    ports_used: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    nmap_fingerprint: str = ""
    distance: int = -1

    def to_dict(self) -> dict:
        d = {"name": self.name, "accuracy": self.accuracy, "family": self.family, "vendor": self.vendor,
             "osgen": self.osgen, "type": self.type, "cpe": list(self.cpes)}
        if self.matches is not None:
            d.update(matches=self.matches, ports_used=[list(p) for p in self.ports_used], lines=list(self.lines),
                     nmap_fingerprint=self.nmap_fingerprint, distance=self.distance)
            return d
        if self.fingerprint is not None:
            d["fingerprint"] = self.fingerprint.to_dict()
        if self.others:
            d["others"] = [dict(zip(("name", "accuracy", "family", "vendor", "osgen", "type", "cpe"), o))
                           for o in self.others]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "OsGuess":
        others = [tuple(o.get(k, "") for k in ("name", "accuracy", "family", "vendor", "osgen", "type", "cpe"))
                  for o in d.get("others", [])]
        fp = None
        if d.get("fingerprint"):
            f = d["fingerprint"]
            fp = Fingerprint(ttl=f["ttl"], window=f["window"], mss=f["mss"],
                             wscale=-1 if f.get("wscale") is None else f["wscale"], options=f["options"],
                             df=int(f["df"]), port=f.get("port", 0), rst_ttl=f.get("rst_ttl", 0),
                             rst_window=f.get("rst_window", -1), closed_port=f.get("closed_port", 0))
        if d.get("matches") is not None:
            others = [(m["name"], m["accuracy"], "", "", "", "", "") for m in d["matches"][1:]]
        return cls(d["name"], int(d["accuracy"]), d["family"], d["vendor"], d.get("osgen", ""), d.get("type", ""),
                   list(d.get("cpe", [])), fp, others, d.get("matches"),
                   [tuple(p) for p in d.get("ports_used", [])], list(d.get("lines", [])),
                   d.get("nmap_fingerprint", ""), int(d.get("distance", -1)))

    @property
    def running(self) -> str:
        """nmap's 'Running:' line, e.g. 'Linux 5.X|6.X'."""
        gens = [g for g in self.osgen.split("|") if g and g != "*"]
        vendor = self.family if self.vendor in ("*", "") else self.vendor
        return f"{vendor} {'|'.join(gens)}".strip()


def initial_ttl(ttl: int) -> int:
    for t in INITIAL_TTLS:
        if ttl <= t:
            return t
    return 255


def options_text(kinds) -> str:
    kinds = list(int(k) for k in kinds)
    while kinds and kinds[-1] == 0:     # unused slots (and a trailing end-of-list)
        kinds.pop()
    return ",".join(OPTION_LETTERS.get(k, f"?{k}") for k in kinds)


def load_signatures(path=None) -> list:
    p = Path(path) if path else DEFAULT_SIGNATURES
    out = []
    for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        f = [x.strip() for x in line.split("|")]
        if len(f) != 12:
            raise ValueError(f"{p}:{n}: expected 12 fields separated by |, got {len(f)}")
        name, family, vendor, osgen, typ, ttl, windows, options, wscale, df, rstw, cpe = f
        osgen = osgen.replace("/", "|")
        out.append(Signature(
            name, family, vendor, osgen, typ, int(ttl), [w.strip() for w in windows.split(",")],
            options.rstrip(",E") if options != "*" else "*",
            None if wscale == "*" else set() if wscale == "-" else {int(x) for x in wscale.split(",")},
            None if df == "*" else int(df), None if rstw == "*" else int(rstw), cpe))
    return out


def _window_ok(sig: Signature, window: int, mss: int) -> bool:
    for w in sig.windows:
        if w == "*":
            return True
        if w.startswith("mss*"):
            k = int(w[4:])
            if mss and window in (mss * k, (mss - 12) * k):
                return True
        elif int(w) == window:
            return True
    return False


def score(sig: Signature, fp: Fingerprint) -> int:
    """0..100: the share of the evidence this signature explains."""
    got = total = 0
    total += WEIGHTS["ttl"]
    got += WEIGHTS["ttl"] if sig.ttl == fp.initial_ttl else 0
    total += WEIGHTS["options"]
    opts = fp.options.rstrip(",E")
    sig_opts = sig.options
    if opts.count(",") == 7 and sig_opts.startswith(opts):
        sig_opts = opts            # the scan keeps 8 option kinds: a longer list is cut there
    if sig_opts == "*" or sig_opts == opts:
        got += WEIGHTS["options"]
    elif sorted(sig_opts.split(",")) == sorted(opts.split(",")):
        got += WEIGHTS["options"] // 3                   # same options, another order
    total += WEIGHTS["window"]
    got += WEIGHTS["window"] if _window_ok(sig, fp.window, fp.mss) else 0
    total += WEIGHTS["wscale"]
    if sig.wscale is None or (fp.wscale < 0 and not sig.wscale) or fp.wscale in sig.wscale:
        got += WEIGHTS["wscale"]
    total += WEIGHTS["df"]
    got += WEIGHTS["df"] if sig.df is None or sig.df == fp.df else 0
    if fp.rst_ttl:
        total += WEIGHTS["rst_ttl"] + WEIGHTS["rst_window"]
        got += WEIGHTS["rst_ttl"] if initial_ttl(fp.rst_ttl) == sig.ttl else 0
        got += WEIGHTS["rst_window"] if sig.rst_window is None or sig.rst_window == fp.rst_window else 0
    return round(100 * got / total)


def guess(fp: Fingerprint, signatures=None, service_os: Optional[set] = None,
          show_above: Optional[int] = None) -> Optional[OsGuess]:
    """The best signatures for a fingerprint; service_os: OS names services reported (ostype);
    show_above: the lowest score shown (--osscan-guess: GUESS_ABOVE)."""
    show_above = SHOW_ABOVE if show_above is None else show_above
    sigs = signatures if signatures is not None else load_signatures()
    ranked = []
    for sig in sigs:
        s = score(sig, fp)
        if service_os:
            names = " ".join(service_os).lower()
            words = FAMILY_OS_NAMES.get(sig.family, (sig.family.lower(),))
            if any(w in names for w in words):
                s = min(100, s + 4)
        ranked.append((s, sig))
    ranked.sort(key=lambda x: -x[0])
    ranked = [(s, sig) for s, sig in ranked if s >= show_above][:MAX_MATCHES]
    if not ranked:
        return None
    s, best = ranked[0]
    return OsGuess(best.name, s, best.family, best.vendor, best.osgen, best.type,
                   [best.cpe] if best.cpe else [], fp,
                   [(sig.name, sc, sig.family, sig.vendor, sig.osgen, sig.type, sig.cpe) for sc, sig in ranked[1:]])


def fingerprints(rows: np.ndarray) -> dict:
    """{addr: Fingerprint} from RESULT_DTYPE rows: each host's first SYN-ACK (and first RST)."""
    from .states import REASONS, addresses
    syn_ack = rows[(rows["reason"] == REASONS["syn-ack"]) & (rows["proto"] == 6)]
    rst = rows[(rows["reason"] == REASONS["reset"]) & (rows["proto"] == 6)]
    out = {}
    for addr, r in zip(addresses(syn_ack), syn_ack):
        if addr in out:
            continue
        out[addr] = Fingerprint(ttl=int(r["ttl"]), window=int(r["window"]), mss=int(r["mss"]),
                                wscale=int(r["wscale"]) if 3 in r["tcpopts"].tolist() else -1,
                                options=options_text(r["tcpopts"]), df=int(r["df"]), port=int(r["port"]))
    for addr, r in zip(addresses(rst), rst):
        fp = out.get(addr)
        if fp is not None and not fp.rst_ttl:
            fp.rst_ttl, fp.rst_window, fp.rst_df = int(r["ttl"]), int(r["window"]), int(r["df"])
            fp.closed_port = int(r["port"])
    return out


# The extra probe of -O for hosts whose scan showed no closed port: a SYN to a port that is
# closed almost everywhere, for the RST's TTL, window and DF (nmap's T5 probe does the same).
CLOSED_PROBE_PORT = 40247


def hosts_without_rst(rows: np.ndarray) -> list:
    """Addresses with a SYN-ACK to fingerprint but no RST yet: the extra probe's targets."""
    return [addr for addr, fp in fingerprints(rows).items() if not fp.rst_ttl]


def guess_hosts(rows: np.ndarray, services: Optional[dict] = None, signatures=None, limit: bool = False,
                aggressive: bool = False) -> dict:
    """{addr: OsGuess} for every host with an open TCP port among the rows; limit
    (--osscan-limit): only hosts that also showed a closed port; aggressive (--osscan-guess):
    guesses down to GUESS_ABOVE."""
    sigs = signatures if signatures is not None else load_signatures()
    svc_os: dict = {}
    for (addr, _proto, _port), info in (services or {}).items():
        if getattr(info, "ostype", ""):
            svc_os.setdefault(addr, set()).add(info.ostype)
    out = {}
    for addr, fp in fingerprints(rows).items():
        if limit and not fp.rst_ttl:
            continue
        g = guess(fp, sigs, svc_os.get(addr), GUESS_ABOVE if aggressive else SHOW_ABOVE)
        if g is not None:
            out[addr] = g
    return out
