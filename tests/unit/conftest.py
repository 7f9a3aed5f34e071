"""Unit tests run in the machine's own network namespace, which has routes to the world: the one
rule (probes go only to 127.0.0.0/8 or into namespaces a test made) is enforced here, not hoped
for. Any connect or sendto to another address fails the test before a packet leaves."""
from __future__ import annotations

import ipaddress
import socket

import pytest

_original = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "sendto", "send")}


def _check(address) -> None:
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        try:
            ip = ipaddress.ip_address(address[0].split("%")[0])
        except ValueError:
            raise AssertionError(f"unit tests connect to addresses, not names: {address[0]}") from None
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (ip.is_loopback or (mapped is not None and mapped.is_loopback) or ip.is_unspecified):
            raise AssertionError(f"unit test tried to reach {ip}: only 127.0.0.0/8 and ::1 are allowed here")


def _connect(self, address):
    # A datagram connect sends nothing (libraries use one to ask the kernel for a source address,
    # e.g. Dask toward 8.8.8.8): the send is what is checked.
    if self.type != socket.SOCK_DGRAM:
        _check(address)
    return _original["connect"](self, address)


def _send(self, data, *args):
    if self.type == socket.SOCK_DGRAM and self.family in (socket.AF_INET, socket.AF_INET6):
        _check(self.getpeername())
    return _original["send"](self, data, *args)


def _connect_ex(self, address):
    _check(address)
    return _original["connect_ex"](self, address)


def _sendto(self, data, *args):
    _check(args[-1])
    return _original["sendto"](self, data, *args)


@pytest.fixture(autouse=True, scope="session")
def only_loopback():
    socket.socket.connect = _connect              # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex        # type: ignore[method-assign]
    socket.socket.sendto = _sendto                # type: ignore[method-assign]
    socket.socket.send = _send                    # type: ignore[method-assign]
    yield
    for name, method in _original.items():
        setattr(socket.socket, name, method)


def test_the_guard_refuses_other_addresses():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(AssertionError, match="198.18.0.1"):
        s.connect(("198.18.0.1", 80))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(AssertionError, match="192.0.2.1"):
        s.sendto(b"x", ("192.0.2.1", 53))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(AssertionError, match="192.0.2.1"):
        s.connect(("192.0.2.1", 53))
        s.send(b"x")
