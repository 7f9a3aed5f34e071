"""An SSH server's host keys, as nmap's ssh-hostkey reads them: one key exchange per key type the
server offers (the server's KEX reply carries its host key), stopped before any key is derived.
Only the unencrypted start of SSH-2 (RFC 4253) is spoken: version line, KEXINIT, KEX init/reply."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .exchange import Conversation

# Host key algorithm lists asked for, per key type, in nmap's order of output.
KEY_TYPES = (("ssh-dss", ("ssh-dss",)),
             ("ssh-rsa", ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")),
             ("ecdsa-sha2-nistp256", ("ecdsa-sha2-nistp256",)),
             ("ecdsa-sha2-nistp384", ("ecdsa-sha2-nistp384",)),
             ("ecdsa-sha2-nistp521", ("ecdsa-sha2-nistp521",)),
             ("ssh-ed25519", ("ssh-ed25519",)))
KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256",
       "diffie-hellman-group14-sha256", "diffie-hellman-group14-sha1")
CIPHERS = "aes128-ctr,aes256-ctr,aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-cbc,3des-cbc"
MACS = "hmac-sha2-256,hmac-sha1,umac-64@openssh.com,hmac-sha2-256-etm@openssh.com"
GROUP14 = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
              "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
              "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
              "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
              "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
              "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
TYPE_LABEL = {"ssh-dss": "DSA", "ssh-rsa": "RSA", "ssh-ed25519": "ED25519"}


@dataclass
class HostKey:
    type: str            # ssh-rsa, ssh-ed25519, ecdsa-sha2-nistp256, ...
    bits: int
    blob: bytes

    @property
    def fingerprint(self) -> str:
        """nmap's fingerprint: the MD5 of the key blob, in hex."""
        return hashlib.md5(self.blob).hexdigest()

    @property
    def label(self) -> str:
        return TYPE_LABEL.get(self.type, "ECDSA" if self.type.startswith("ecdsa") else self.type.upper())

    @property
    def key(self) -> str:
        return base64.b64encode(self.blob).decode()


def _string(data: bytes, pos: int) -> Tuple[bytes, int]:
    (n,) = struct.unpack_from(">I", data, pos)
    if pos + 4 + n > len(data):
        raise ValueError("truncated SSH string")
    return data[pos + 4:pos + 4 + n], pos + 4 + n


def _s(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _mpint(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "big") if n else b""
    return _s(raw)


def _packet(payload: bytes) -> bytes:
    pad = 8 - (len(payload) + 5) % 8
    if pad < 4:
        pad += 8
    return struct.pack(">IB", len(payload) + pad + 1, pad) + payload + os.urandom(pad)


def _whole_packet(buf: bytes) -> int:
    if len(buf) < 4:
        return 0
    n = struct.unpack_from(">I", buf)[0] + 4
    if n > 256 * 1024:
        raise ValueError("SSH packet too long")
    return n if len(buf) >= n else 0


def _payload(packet: bytes) -> bytes:
    pad = packet[4]
    return packet[5:len(packet) - pad]


def _kexinit(kex: str, hostkeys: str) -> bytes:
    lists = [kex, hostkeys, CIPHERS, CIPHERS, MACS, MACS, "none", "none", "", ""]
    return bytes([20]) + os.urandom(16) + b"".join(_s(x.encode()) for x in lists) + b"\0" + b"\0\0\0\0"


def parse_kexinit(payload: bytes) -> List[List[str]]:
    if not payload or payload[0] != 20:
        raise ValueError("not a KEXINIT")
    pos, out = 17, []
    for _ in range(10):
        item, pos = _string(payload, pos)
        out.append(item.decode("ascii", "replace").split(",") if item else [])
    return out


def parse_key(blob: bytes) -> HostKey:
    kind_b, pos = _string(blob, 0)
    kind = kind_b.decode("ascii", "replace")
    bits = 0
    if kind == "ssh-rsa":
        _, pos = _string(blob, pos)           # e
        n, _ = _string(blob, pos)
        bits = int.from_bytes(n, "big").bit_length()
    elif kind == "ssh-dss":
        p, _ = _string(blob, pos)
        bits = int.from_bytes(p, "big").bit_length()
    elif kind.startswith("ecdsa-sha2-nistp"):
        bits = int(kind[len("ecdsa-sha2-nistp"):])
    elif kind == "ssh-ed25519":
        bits = 256
    return HostKey(kind, bits, blob)


class _Session:
    def __init__(self, conv: Conversation):
        self.c = conv

    async def start(self) -> bytes:
        """Version lines exchanged; returns the server's KEXINIT payload."""
        await self.c.send(b"SSH-2.0-scanner\r\n")
        for _ in range(20):            # servers may send lines before their version
            line = await self.c.read_until(lambda b: b.find(b"\n") + 1)
            if not line:
                raise ValueError("no SSH version line")
            if line.startswith(b"SSH-"):
                break
        else:
            raise ValueError("no SSH version line")
        return await self.read()

    async def read(self) -> bytes:
        pkt = await self.c.read_until(_whole_packet)
        if not pkt:
            raise ValueError("no SSH packet")
        return _payload(pkt)


async def _one_key(host: str, port: int, algos: Tuple[str, ...], timeout: float) -> Optional[HostKey]:
    async with Conversation(host, port, timeout=timeout) as c:
        s = _Session(c)
        server = parse_kexinit(await s.start())
        kex = next((k for k in KEX if k in server[0]), None)
        if kex is None or not any(a in server[1] for a in algos):
            return None
        await c.send(_packet(_kexinit(kex, ",".join(algos))))
        if kex.startswith("curve25519"):
            from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
            pub = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            init = bytes([30]) + _s(pub)
        elif kex.startswith("ecdh-sha2-nistp256"):
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
            pub = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
                Encoding.X962, PublicFormat.UncompressedPoint)
            init = bytes([30]) + _s(pub)
        else:
            x = int.from_bytes(os.urandom(32), "big") | 1
            init = bytes([30]) + _mpint(pow(2, x, GROUP14))
        await c.send(_packet(init))
        for _ in range(4):
            reply = await s.read()
            if reply[:1] == bytes([31]):
                blob, _ = _string(reply, 1)
                return parse_key(blob)
            if reply[:1] == bytes([1]):      # disconnect
                return None
        return None


async def host_keys(host: str, port: int, timeout: float = 5.0) -> List[HostKey]:
    """The host keys of an SSH server, one per key type it offers (nmap's order)."""
    async with Conversation(host, port, timeout=timeout) as c:
        offered = parse_kexinit(await _Session(c).start())[1]
    wanted = [algos for _, algos in KEY_TYPES if any(a in offered for a in algos)]

    async def one(algos):
        try:
            return await _one_key(host, port, algos, timeout)
        except (OSError, ValueError, struct.error, asyncio.TimeoutError):
            return None
    keys = await asyncio.gather(*(one(a) for a in wanted))
    return [k for k in keys if k is not None]
