"""Typed stub for scanner._ext.hitlist (see ext/hitlist.pyx): IPv6 hitlists as packed 16-byte rows."""

import numpy as np
import numpy.typing as npt

def sort_unique16(rows: npt.NDArray[np.uint8]) -> int:
    """Sorts (n, 16) address rows in place and moves the distinct ones to the front; their count."""
def parse_chunk(buf: bytes, max_line: int, out: npt.NDArray[np.uint8], at: int) -> tuple[int, list[bytes], int]:
    """Writes the IPv6 addresses of whole lines of a target file into out from row at on:
    (rows written, the other words, status 0 ok / 1 not a target list / 2 out is full)."""
