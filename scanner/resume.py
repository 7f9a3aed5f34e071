"""Pause and resume, as masscan does it. A stopped Session hands back a Checkpoint: the scan
request, the seed, the stage it was in, that stage's cursor with the cookie key and the bitmap of
answered probes, and what the outputs already hold. A new Session given it goes on without
re-probing what answered and without writing any result twice. The CLI keeps it in a resume file.

A resume file is trusted only as far as its owner: it must belong to the running user and not be
writable by anyone else (as ssh treats its keys), and the request it holds is validated like a
command line. It is written through a private temporary file, never through a planted symlink."""
from __future__ import annotations

import base64
import json
import os
import stat
import tempfile
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .engine import StageCheckpoint
from .errors import InputError, ScannerError
from .request import ScanRequest
from .states import RESULT_DTYPE

FILE_NAME = "scanner-resume.json"
VERSION = 3              # 3: the bitmap has one bit per probe of the shard, in sending order


def _pack(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")


def _unpack(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


@dataclass
class Checkpoint:
    request: ScanRequest
    seed: int
    stage: int                      # index of the interrupted stage (host discovery counts as one)
    stage_checkpoint: StageCheckpoint
    up: Optional[list] = None       # [(start, end)] hosts found up, when discovery had finished
    family: int = 4
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=RESULT_DTYPE))
    summary: dict = field(default_factory=dict)
    scan_id: Optional[int] = None   # the store's record of the scan, continued on resume
    path: Optional[str] = None      # where it was loaded from or saved to

    def to_dict(self) -> dict:
        cp = self.stage_checkpoint
        return {"version": VERSION, "request": json.loads(self.request.to_json()), "seed": self.seed,
                "stage": self.stage,
                "checkpoint": {"attempt": cp.attempt, "position": cp.position, "key": cp.key.hex(),
                               "bitmap": _pack(cp.bitmap.tobytes()), "base": cp.base,
                               "answered": cp.answered},
                "up": self.up, "family": self.family, "rows": _pack(self.rows.tobytes()),
                "summary": self.summary, "scan_id": self.scan_id}

    def save(self, path: str = FILE_NAME) -> str:
        """Writes the checkpoint to path (replacing it whole); returns its absolute path.
        Raises ScannerError (one line) when it cannot be written."""
        directory = os.path.dirname(os.path.abspath(path))
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".scanner-resume-", dir=directory)   # O_EXCL, mode 0600
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f)
            os.replace(tmp, path)          # never a half-written resume file
        except OSError as e:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            raise ScannerError(f"cannot write the resume file '{path}': {e.strerror or e}") from None
        self.path = os.path.abspath(path)
        return self.path

    @classmethod
    def load(cls, path: str) -> "Checkpoint":
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as e:
            raise InputError(f"cannot read resume file '{path}': {e.strerror or e}") from None
        with os.fdopen(fd, encoding="utf-8") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid():
                raise InputError(f"resume file '{path}' belongs to another user: not trusted")
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or not stat.S_ISREG(st.st_mode):
                raise InputError(f"resume file '{path}' is writable by others (or not a file): "
                                 f"not trusted (chmod go-w)")
            try:
                doc = json.load(f)
            except (OSError, ValueError) as e:
                raise InputError(f"'{path}' is not a scanner resume file ({type(e).__name__})") from None
        try:
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')}, expected {VERSION}")
            request = ScanRequest.from_json(doc["request"])
            cp = doc["checkpoint"]
            checkpoint = StageCheckpoint(int(cp["attempt"]), int(cp["position"]),
                                         np.frombuffer(_unpack(cp["bitmap"]), dtype=np.uint8).copy(),
                                         bytes.fromhex(cp["key"]), int(cp.get("base", 0)),
                                         int(cp.get("answered", -1)))
            rows = np.frombuffer(_unpack(doc["rows"]), dtype=RESULT_DTYPE).copy()
            up = doc.get("up")
            return cls(request, int(doc["seed"]), int(doc["stage"]), checkpoint,
                       [(int(a), int(b)) for a, b in up] if up is not None else None,
                       int(doc.get("family", 4)), rows, dict(doc.get("summary", {})),
                       int(doc["scan_id"]) if doc.get("scan_id") is not None else None, path)
        except InputError as e:
            raise InputError(f"'{path}' holds a bad scan request: {e}") from None
        except (ValueError, KeyError, TypeError, AttributeError, zlib.error) as e:
            raise InputError(f"'{path}' is not a scanner resume file ({type(e).__name__}: {e})"[:300]) from None
