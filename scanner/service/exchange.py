"""Talking to one port: a TCP (optionally TLS) exchange that sends a probe and reads until the reply
matches, goes idle or times out; a UDP exchange. Kernel sockets through asyncio."""
from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from typing import Callable, Optional

CONNECT_TIMEOUT = 4.0
IDLE_AFTER_DATA = 0.4    # stop reading this long after the last data when nothing matched yet
MAX_READ = 65536


def tls_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    except (ssl.SSLError, ValueError):
        pass
    return ctx


@dataclass
class Exchange:
    data: bytes = b""
    closed: bool = False         # the peer closed the connection
    refused: bool = False        # could not connect at all
    elapsed: float = 0.0
    cert: Optional[bytes] = None


async def tcp_exchange(host: str, port: int, payload: bytes, wait: float, tls: Optional[ssl.SSLContext] = None,
                       done: Optional[Callable[[bytes], bool]] = None) -> Exchange:
    """Connects, sends payload (if any), reads until `done(data)`, the peer closes, wait seconds
    pass, or the line is idle a moment after some data."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    out = Exchange()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls, server_hostname=None if tls is None else "",
                                    ssl_handshake_timeout=CONNECT_TIMEOUT if tls else None),
            CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError, ssl.SSLError, EOFError):
        out.refused = True
        return out
    try:
        if tls is not None:
            obj = writer.get_extra_info("ssl_object")
            out.cert = obj.getpeercert(binary_form=True) if obj else None
        if payload:
            writer.write(payload)
            await writer.drain()
        buf = bytearray()
        deadline = t0 + wait
        while len(buf) < MAX_READ:
            left = deadline - loop.time()
            if buf:
                left = min(left, IDLE_AFTER_DATA)
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(8192), left)
            except asyncio.TimeoutError:
                break
            if not chunk:
                out.closed = True
                break
            buf += chunk
            if done is not None and done(bytes(buf)):
                break
        out.data = bytes(buf)
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        out.closed = True
    finally:
        out.elapsed = loop.time() - t0
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass
    return out


async def udp_exchange(host: str, port: int, payload: bytes, wait: float) -> Optional[bytes]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setblocking(False)
    try:
        s.connect((host, port))
        await loop.sock_sendall(s, payload)
        return await asyncio.wait_for(loop.sock_recv(s, MAX_READ), wait)
    except (OSError, asyncio.TimeoutError):
        return None
    finally:
        s.close()


class Conversation:
    """A dialogue with one port for the scripts (FTP, SMTP, SSH, Redis): connect, send, read until
    a reply is complete; every step has a timeout. Use as `async with Conversation(...) as c:`."""

    def __init__(self, host: str, port: int, tls: Optional[ssl.SSLContext] = None, timeout: float = 5.0):
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self.buf = bytearray()
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def __aenter__(self) -> "Conversation":
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.tls,
                                    server_hostname=None if self.tls is None else "",
                                    ssl_handshake_timeout=CONNECT_TIMEOUT if self.tls else None),
            CONNECT_TIMEOUT)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 1.0)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), self.timeout)

    async def read_until(self, complete: Callable[[bytes], int], timeout: Optional[float] = None) -> bytes:
        """Reads until complete(buffer) gives the length of a whole reply (0: not yet), returns
        that reply and keeps the rest; b"" on timeout or close."""
        assert self.reader is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        while True:
            n = complete(bytes(self.buf))
            if n:
                out = bytes(self.buf[:n])
                del self.buf[:n]
                return out
            left = deadline - loop.time()
            if left <= 0 or len(self.buf) > MAX_READ:
                return b""
            try:
                chunk = await asyncio.wait_for(self.reader.read(8192), left)
            except (asyncio.TimeoutError, OSError, ssl.SSLError):
                return b""
            if not chunk:
                return b""
            self.buf += chunk

    async def read_some(self, timeout: Optional[float] = None) -> bytes:
        """Whatever arrives until the line goes idle a moment after some data (a banner)."""
        assert self.reader is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < MAX_READ:
            left = deadline - loop.time()
            if self.buf:
                left = min(left, IDLE_AFTER_DATA)
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(self.reader.read(8192), left)
            except (asyncio.TimeoutError, OSError, ssl.SSLError):
                break
            if not chunk:
                break
            self.buf += chunk
        out = bytes(self.buf)
        self.buf.clear()
        return out
