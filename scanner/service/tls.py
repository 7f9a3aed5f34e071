"""What -sV reads out of TLS and HTTP on the way: the server certificate and the page title."""
from __future__ import annotations

import base64
import re
from typing import Optional

_OIDS = {"2.5.4.3": "commonName", "2.5.4.6": "countryName", "2.5.4.7": "localityName",
         "2.5.4.8": "stateOrProvinceName", "2.5.4.10": "organizationName",
         "2.5.4.11": "organizationalUnitName", "1.2.840.113549.1.9.1": "emailAddress",
         "2.5.4.5": "serialNumber"}


def parse_certificate(der: bytes) -> dict:
    """subject, issuer ([(attribute, value)]), not_before/not_after (ISO), names (SANs), and the
    key, signature algorithm and digests of an X.509 certificate, in nmap's ssl-cert terms."""
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

    cert = x509.load_der_x509_certificate(der)

    def name(n) -> list:
        return [(_OIDS.get(a.oid.dotted_string, a.oid.dotted_string),
                 a.value if isinstance(a.value, str) else a.value.hex()) for a in n]
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        alt = []          # type: ignore[assignment]
    except ValueError:    # a malformed extension: the rest of the certificate still tells
        alt = []          # type: ignore[assignment]
    names = [f"DNS:{g.value}" if isinstance(g, x509.DNSName) else f"IP Address:{g.value}"
             for g in alt if isinstance(g, (x509.DNSName, x509.IPAddress))]
    iso = "%Y-%m-%dT%H:%M:%S"
    pubkey: dict = {}
    try:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            nums = key.public_numbers()
            pubkey = {"type": "rsa", "bits": key.key_size, "modulus": f"{nums.n:X}", "exponent": str(nums.e)}
        elif isinstance(key, ec.EllipticCurvePublicKey):
            pubkey = {"type": "ec", "bits": key.key_size, "curve": key.curve.name}
        elif isinstance(key, dsa.DSAPublicKey):
            pubkey = {"type": "dsa", "bits": key.key_size}
    except (ValueError, TypeError):         # an algorithm the library does not know
        pass
    try:
        sig_algo = cert.signature_algorithm_oid._name
    except AttributeError:
        sig_algo = cert.signature_algorithm_oid.dotted_string
    pem = "-----BEGIN CERTIFICATE-----\n" + "\n".join(
        base64.b64encode(der).decode()[i:i + 64] for i in range(0, len(base64.b64encode(der)), 64)) + \
        "\n-----END CERTIFICATE-----\n"
    return {"subject": name(cert.subject), "issuer": name(cert.issuer), "names": names,
            "not_before": cert.not_valid_before_utc.strftime(iso),
            "not_after": cert.not_valid_after_utc.strftime(iso), "pubkey": pubkey, "sig_algo": sig_algo,
            "md5": hashlib.md5(der).hexdigest(), "sha1": hashlib.sha1(der).hexdigest(), "pem": pem}


# The name fields nmap's ssl-cert prints without -vv, in its order.
_SHOWN = ("commonName", "organizationName", "stateOrProvinceName", "countryName")


def cert_text(cert: dict, verbose: int = 0) -> str:
    """nmap's ssl-cert script output (its layout at this verbosity)."""
    def dn(items):
        d = dict(items)
        shown = [f"{k}={d[k]}" for k in _SHOWN if k in d]
        if verbose > 1:
            shown += [f"{k}={v}" for k, v in items if k not in _SHOWN]
        return "/".join(shown)
    lines = [f"Subject: {dn(cert['subject'])}"]
    if cert["names"]:
        lines.append("Subject Alternative Name: " + ", ".join(cert["names"]))
    if verbose:
        lines.append(f"Issuer: {dn(cert['issuer'])}")
        if cert.get("pubkey"):
            lines += [f"Public Key type: {cert['pubkey']['type']}", f"Public Key bits: {cert['pubkey']['bits']}"]
        if cert.get("sig_algo"):
            lines.append(f"Signature Algorithm: {cert['sig_algo']}")
    lines += [f"Not valid before: {cert['not_before']}", f"Not valid after:  {cert['not_after']}"]
    if verbose and cert.get("md5"):
        def groups(h):
            return " ".join(h[i:i + 4] for i in range(0, len(h), 4))
        lines += [f"MD5:   {groups(cert['md5'])}", f"SHA-1: {groups(cert['sha1'])}"]
    if verbose > 1 and cert.get("pem"):
        lines.append(cert["pem"].rstrip("\n"))
    return "\n".join(lines)


def cert_data(cert: dict) -> dict:
    """nmap's ssl-cert structured output (the <table>/<elem> of -oX)."""
    out: dict = {"subject": dict(sorted(cert["subject"])), "issuer": dict(sorted(cert["issuer"]))}
    if cert.get("pubkey"):
        out["pubkey"] = {k: str(v) for k, v in cert["pubkey"].items() if k != "curve"}
        if "curve" in cert["pubkey"]:
            out["pubkey"]["ecdhparams"] = {"curve_params": {"ec_curve_type": "namedcurve",
                                                            "curve": cert["pubkey"]["curve"]}}
    if cert.get("sig_algo"):
        out["sig_algo"] = cert["sig_algo"]
    out["validity"] = {"notBefore": cert["not_before"], "notAfter": cert["not_after"]}
    for k in ("md5", "sha1", "pem"):
        if cert.get(k):
            out[k] = cert[k]
    return out


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


def http_title(data: bytes) -> Optional[str]:
    if not data.startswith(b"HTTP/"):
        return None
    m = _TITLE.search(data)
    if m:
        return " ".join(m.group(1).decode("utf-8", "replace").split())[:200]
    return None
