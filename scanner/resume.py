"""Pause and resume, as masscan does it: an interrupted scan writes a resume file (the command,
the seed, the stage it was in, that stage's checkpoint with the cookie key and the bitmap of
answered probes, and what the outputs already hold); `scanner --resume FILE` goes on from there
without re-probing what answered and without writing any result twice."""
from __future__ import annotations

import base64
import json
import os
import zlib
from dataclasses import dataclass, field

import numpy as np

from .engine import Checkpoint
from .errors import InputError
from .states import RESULT_DTYPE

FILE_NAME = "scanner-resume.json"
VERSION = 1


def _pack(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")


def _unpack(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


@dataclass
class ResumeState:
    argv: list                      # the command's arguments, as first given
    seed: int
    stage: int                      # index of the interrupted stage (host discovery counts as one)
    checkpoint: Checkpoint
    up: list | None = None          # [(start, end)] hosts found up, when discovery had finished
    family: int = 4
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=RESULT_DTYPE))
    summary: dict = field(default_factory=dict)
    scan_id: int | None = None      # the store's record of the scan, continued on resume
    path: str = FILE_NAME           # where it was loaded from

    def save(self, path: str = FILE_NAME) -> str:
        cp = self.checkpoint
        doc = {"version": VERSION, "argv": self.argv, "seed": self.seed, "stage": self.stage,
               "checkpoint": {"attempt": cp.attempt, "position": cp.position, "key": cp.key.hex(),
                              "bitmap": _pack(cp.bitmap.tobytes())},
               "up": self.up, "family": self.family, "rows": _pack(self.rows.tobytes()),
               "summary": self.summary, "scan_id": self.scan_id}
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, path)          # never a half-written resume file
        return os.path.abspath(path)

    @classmethod
    def load(cls, path: str) -> "ResumeState":
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')}, expected {VERSION}")
            cp = doc["checkpoint"]
            checkpoint = Checkpoint(int(cp["attempt"]), int(cp["position"]),
                                    np.frombuffer(_unpack(cp["bitmap"]), dtype=np.uint8).copy(),
                                    bytes.fromhex(cp["key"]))
            rows = np.frombuffer(_unpack(doc["rows"]), dtype=RESULT_DTYPE).copy()
            return cls(list(doc["argv"]), int(doc["seed"]), int(doc["stage"]), checkpoint,
                       [tuple(r) for r in doc["up"]] if doc.get("up") is not None else None,
                       int(doc.get("family", 4)), rows, dict(doc.get("summary", {})), doc.get("scan_id"), path)
        except OSError as e:
            raise InputError(f"cannot read resume file '{path}': {e.strerror or e}") from None
        except (ValueError, KeyError, TypeError, zlib.error) as e:
            raise InputError(f"'{path}' is not a scanner resume file ({e})") from None
