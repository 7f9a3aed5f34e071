"""nmap's OS database (nmap-os-db): its reference fingerprints and nmap's matching of an observed
fingerprint against them (MatchPoints, the `|`, `-`, `<`, `>` expressions as nmap 7.93 reads them, the
0.85 guess threshold, 36 matches at most). The probes that observe a fingerprint are in
scanner/osprobe.py; the file format is nmap's (nmap.org/book/osdetect-fingerprint-format.html)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import InputError

DEFAULT_DB_PATHS = ("/usr/share/nmap/nmap-os-db", "/usr/local/share/nmap/nmap-os-db")
BUILTIN = "builtin"             # --os-db builtin: scanner's own passive guess (scanner/osguess.py)
GUESS_THRESHOLD = 0.85          # nmap's OSSCAN_GUESS_THRESHOLD
MAX_MATCHES = 36                # nmap's MAX_FP_RESULTS
# Each test's attributes in nmap's order (FingerPrintDef::test_attrs).
_T = ("R", "DF", "T", "TG", "W", "S", "A", "F", "O", "RD", "Q")
TESTS: dict = {
    "SEQ": ("SP", "GCD", "ISR", "TI", "CI", "II", "SS", "TS"),
    "OPS": ("O1", "O2", "O3", "O4", "O5", "O6"),
    "WIN": ("W1", "W2", "W3", "W4", "W5", "W6"),
    "ECN": ("R", "DF", "T", "TG", "W", "O", "CC", "Q"),
    "T1": ("R", "DF", "T", "TG", "S", "A", "F", "RD", "Q"),
    **{f"T{i}": _T for i in range(2, 8)},
    "U1": ("R", "DF", "T", "TG", "IPL", "UN", "RIPL", "RID", "RIPCK", "RUCK", "RUD"),
    "IE": ("R", "DFI", "T", "TG", "CD"),
}


@dataclass
class OsClass:
    vendor: str
    family: str
    gen: str            # "" when the database has none
    type: str
    cpes: list = field(default_factory=list)


@dataclass
class Reference:
    """One `Fingerprint` entry of the database."""
    name: str
    line: int
    classes: list = field(default_factory=list)
    tests: dict = field(default_factory=dict)        # test -> {attr: expression}
    flat: Optional[list] = None         # [(test, attr, expression, points)], made on first use
    numprints: int = 0                  # the points of every attribute (nmap's numprints)


@dataclass
class OsDb:
    path: str
    points: dict                # test -> {attr: points} (MatchPoints)
    prints: list                # [Reference]
    memo: dict = field(default_factory=dict)      # (value, expression) -> matched
    table: Optional["_Table"] = None              # made by the first match()


def find_db(path: Optional[str] = None) -> Optional[str]:
    """--os-db PATH, else Debian's nmap-os-db if installed, else None (the built-in guess, which
    `--os-db builtin` also chooses)."""
    if path == BUILTIN:
        return None
    if path:
        return path
    return next((p for p in DEFAULT_DB_PATHS if os.access(p, os.R_OK)), None)


def check_db(path: str) -> None:
    """A one-line InputError when --os-db names no readable nmap-os-db file (parsing comes later)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(1 << 16)
    except OSError as e:
        raise InputError(f"--os-db {path}: {e.strerror or e}") from None
    if "MatchPoints" not in head and "Fingerprint " not in head:
        raise InputError(f"--os-db {path}: not an nmap-os-db file (no MatchPoints or Fingerprint lines)")


def _parse_tests(body: str, where: str) -> tuple:
    """'SEQ(SP=0-5%GCD=1)' -> ('SEQ', {'SP': '0-5', 'GCD': '1'}), R filled in as nmap does."""
    name, _, rest = body.partition("(")
    if name not in TESTS or not rest.endswith(")"):
        raise InputError(f"{where}: not a fingerprint test line: {body[:60]!r}")
    values: dict = {}
    inner = rest[:-1]
    if inner == "R=N" and TESTS[name][0] != "R":
        return name, values             # OPS(R=N), WIN(R=N): nothing to compare, as nmap reads it
    for item in inner.split("%") if inner else []:
        k, eq, v = item.partition("=")
        if not eq or k not in TESTS[name] or k in values:
            raise InputError(f"{where}: bad attribute {item!r} in {name}")
        values[k] = v
    if TESTS[name][0] == "R":
        if len(values) > (1 if "R" in values else 0):
            values.setdefault("R", "Y")
        else:
            values["R"] = values.get("R", "N")
    return name, values


def load_db(path: str) -> OsDb:
    """Parses nmap-os-db; a missing or malformed file is an InputError (one line)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"--os-db {path}: {e.strerror or e}") from None
    points: dict = {}
    prints: list = []
    cur: Optional[Reference] = None
    in_points = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line or line.startswith("#"):
            if not line:
                cur, in_points = None, False
            continue
        where = f"{path}:{n}"
        if line.startswith("Fingerprint "):
            cur = Reference(line[12:].split("#")[0].strip(), n)
            prints.append(cur)
            in_points = False
        elif line.startswith("MatchPoints"):
            in_points, cur = True, None
        elif line.startswith("This nmap-os-db"):
            continue
        elif in_points:
            name, values = _parse_tests(line, where)
            try:
                points[name] = {k: int(v) for k, v in values.items()}
            except ValueError:
                raise InputError(f"{where}: MatchPoints values must be numbers") from None
        elif cur is None:
            raise InputError(f"{where}: line outside a Fingerprint entry: {line[:60]!r}")
        elif line.startswith("Class "):
            f = [x.strip() for x in line[6:].split("|")]
            if len(f) != 4:
                raise InputError(f"{where}: a Class line has 4 fields separated by |")
            cur.classes.append(OsClass(f[0], f[1], f[2], f[3]))
        elif line.startswith("CPE "):
            if not cur.classes:
                raise InputError(f"{where}: CPE line without a Class line before it")
            cur.classes[-1].cpes.append(line[4:].split()[0])
        else:
            name, values = _parse_tests(line, where)
            cur.tests[name] = values
    if not points:
        raise InputError(f"--os-db {path}: no MatchPoints section (not an nmap-os-db file)")
    if not prints:
        raise InputError(f"--os-db {path}: no Fingerprint entries")
    return OsDb(str(path), points, prints)


def _strtol16(s: str, i: int = 0) -> tuple:
    """C's strtol(s + i, &end, 16) as an unsigned int: (value, end index; i when no digits)."""
    j = i
    while j < len(s) and s[j] in " \t\n\v\f\r":
        j += 1
    neg = False
    if j < len(s) and s[j] in "+-":
        neg = s[j] == "-"
        j += 1
    if s[j:j + 2].lower() == "0x" and j + 2 < len(s) and s[j + 2] in HEX:
        j += 2
    k = j
    while k < len(s) and s[k] in HEX:
        k += 1
    if k == j:
        return 0, i
    v = int(s[j:k], 16)
    return (-v if neg else v) & 0xFFFFFFFF, k


HEX = "0123456789abcdefABCDEF"


def expr_match(val: str, expr: str) -> bool:
    """nmap 7.93's expr_match (the version whose nmap-os-db Debian ships): does the observed
    value match the reference expression? `|` alternatives, `<N`, `>N`, `N-M` (hex numbers),
    else a string compare -- with nmap's quirks kept, since its accuracies are the reference:
    a range is only tried when a `-` follows anywhere in the expression, and an alternative
    before the last matches any value it is a prefix of."""
    val_num, end = _strtol16(val)
    numeric = end == len(val)
    p = 0
    while True:
        q = expr.find("|", p)
        qq = len(expr) if q < 0 else q
        c = expr[p:p + 1]
        if numeric and c in ("<", ">"):
            num, e = _strtol16(expr, p + 1)
            if (e == qq or e == len(expr)) and ((c == "<" and val_num < num) or (c == ">" and val_num > num)):
                return True
        elif numeric and expr.find("-", p) >= 0:
            q1 = expr.find("-", p)
            num, e = _strtol16(expr, p)
            if e == q1:
                num1, e1 = _strtol16(expr, q1 + 1)
                if (e1 == qq or e1 == len(expr)) and num <= val_num <= num1:
                    return True
        elif (q >= 0 and val[:q - p] == expr[p:q]) or (q < 0 and expr[p:] == val):
            return True
        if q < 0:
            return False
        p = q + 1


def _flat(obs: dict) -> dict:
    return {(test, attr): v for test, values in obs.items() for attr, v in values.items() if v is not None}


def compare(ref: Reference, obs: dict, points: dict, memo: Optional[dict] = None, threshold: float = 0.0,
            flat: Optional[dict] = None) -> float:
    """nmap's compare_fingerprints: the share of MatchPoints the observation earns (0..1).
    memo: a dict kept across calls for one observation (the same expressions recur);
    threshold: give up (returning less than it) once it cannot be reached, as nmap does."""
    total = got = 0
    memo = {} if memo is None else memo
    flat = _flat(obs) if flat is None else flat
    if ref.flat is None:
        ref.flat = [(t, a, e, points.get(t, {}).get(a, 0)) for t, vals in ref.tests.items() for a, e in vals.items()]
        ref.numprints = sum(p for *_, p in ref.flat)
    max_miss = (1.0 - threshold) * ref.numprints
    for test, attr, expr, p in ref.flat:
        val = flat.get((test, attr))
        if val is None:
            continue
        total += p
        key = (val, expr)
        ok = memo.get(key)
        if ok is None:
            ok = memo[key] = expr_match(val, expr)
        if ok:
            got += p
        elif threshold and total - got > max_miss:
            break
    return got / total if total else 0.0


class _Table:
    """The database as a (reference x attribute) table of expression numbers, so that one
    observation is scored against every reference with a few numpy operations: each distinct
    expression of an attribute is evaluated once."""

    def __init__(self, db: OsDb):
        self.cols = [(t, a) for t, attrs in TESTS.items() for a in attrs]
        index = {c: i for i, c in enumerate(self.cols)}
        self.exprs: list = [{} for _ in self.cols]           # column -> {expression: number}
        self.table = np.full((len(db.prints), len(self.cols)), -1, dtype=np.int32)
        for r, ref in enumerate(db.prints):
            for t, values in ref.tests.items():
                for a, e in values.items():
                    c = index[(t, a)]
                    self.table[r, c] = self.exprs[c].setdefault(e, len(self.exprs[c]))
        self.points = np.array([db.points.get(t, {}).get(a, 0) for t, a in self.cols], dtype=np.float64)
        self.cache: dict = {}        # (column, value) -> (points at stake, points earned) per reference

    def accuracies(self, obs: dict, memo: dict) -> np.ndarray:
        flat = _flat(obs)
        total = np.zeros(len(self.table))
        got = np.zeros(len(self.table))
        for c, key in enumerate(self.cols):
            val = flat.get(key)
            if val is None or not self.exprs[c]:
                continue
            vecs = self.cache.get((c, val))
            if vecs is None:        # this value's points against every reference, kept for the next host
                ok = np.zeros(len(self.exprs[c]) + 1, dtype=bool)          # the last: attribute absent
                for e, i in self.exprs[c].items():
                    k = (val, e)
                    if k not in memo:
                        memo[k] = expr_match(val, e)
                    ok[i] = memo[k]
                col = self.table[:, c]
                vecs = self.cache[(c, val)] = ((col >= 0) * self.points[c], ok[col] * self.points[c])
            total += vecs[0]
            got += vecs[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, got / np.where(total > 0, total, 1), 0.0)


def match(obs: dict, db: OsDb, threshold: float = GUESS_THRESHOLD) -> list:
    """[(accuracy, Reference)] best first as nmap lists them: at least threshold, one per name
    (its best), ties in database order, MAX_MATCHES at most. (compare() scores one reference
    the same way.)"""
    if db.table is None:
        db.table = _Table(db)
    acc = db.table.accuracies(obs, db.memo)
    best: dict = {}
    order: list = []
    for r in np.nonzero((acc >= threshold) | (acc == 1.0))[0].tolist():
        ref, a = db.prints[r], float(acc[r])
        old = best.get(ref.name)
        if old is None or a > old[0]:       # nmap drops the older, lower entry and inserts anew
            order.append(ref.name)
            best[ref.name] = (a, len(order), ref)
    ranked = sorted(best.values(), key=lambda x: (-x[0], x[1]))
    return [(a, ref) for a, _, ref in ranked[:MAX_MATCHES]]


def fingerprint_text(obs: dict) -> str:
    """The observed fingerprint in nmap's one-test-a-line form (SEQ(...) OPS(...) ...)."""
    out = []
    for test, attrs in TESTS.items():
        values = obs.get(test)
        if values is None:
            continue
        out.append(f"{test}(" + "%".join(f"{a}={values[a]}" for a in attrs if values.get(a) is not None) + ")")
    return "\n".join(out)


def parse_fingerprint(text: str) -> dict:
    """An observed fingerprint from fingerprint_text() (or nmap's, OS: wrapping removed)."""
    text = "".join(line[3:] if line.startswith("OS:") else line for line in text.split("\n")) \
        if "OS:" in text else text
    obs = {}
    for chunk in text.replace(")", ")\n").split("\n"):
        chunk = chunk.strip()
        if not chunk or chunk.startswith("SCAN("):
            continue
        name, values = _parse_tests(chunk, "fingerprint")
        obs[name] = values
    return obs
