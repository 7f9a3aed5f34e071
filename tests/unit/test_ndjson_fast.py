"""The NDJSON writer's fast path for IPv4 rows writes exactly what json.dumps of each row writes."""
import json

import numpy as np

from scanner.output.base import rows_to_dicts
from scanner.output.streams import ndjson_ipv4
from scanner.states import PROTO_NAMES, REASON_NAMES, RESULT_DTYPE, STATE_NAMES


def reference(rows) -> str:
    return "".join(json.dumps(d) + "\n" for d in rows_to_dicts(rows))


def test_same_text_as_json_dumps_for_every_field_value():
    rng = np.random.default_rng(5)
    n = 20000
    rows = np.zeros(n, dtype=RESULT_DTYPE)
    rows["ip"] = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    rows["ip"][:4] = [0, 0xFFFFFFFF, 0xC6120001, 0x0A000100]       # every octet width, x.0.y.z
    rows["port"] = rng.integers(0, 65536, n)
    rows["proto"] = rng.choice(list(PROTO_NAMES), n)
    rows["state"] = rng.choice(list(STATE_NAMES), n)
    rows["reason"] = rng.choice(list(REASON_NAMES), n)
    rows["ttl"] = rng.choice([0, 1, 64, 128, 255], n)                # 0: no TTL (null)
    assert ndjson_ipv4(rows) == reference(rows)
    assert ndjson_ipv4(rows[:0]) == ""
