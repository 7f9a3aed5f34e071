"""The guard that keeps unit tests on loopback (tests/loopback_guard.py) is on."""
import socket

import pytest


def test_the_guard_refuses_other_addresses():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(AssertionError, match="198.18.0.1"):
        s.connect(("198.18.0.1", 80))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(AssertionError, match="192.0.2.1"):
        s.sendto(b"x", ("192.0.2.1", 53))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(AssertionError, match="192.0.2.1"):
        s.connect(("192.0.2.1", 53))
        s.send(b"x")
