"""What -sV reads out of TLS and HTTP on the way: the server certificate and the page title."""
from __future__ import annotations

import re
from typing import Optional

_OIDS = {"2.5.4.3": "commonName", "2.5.4.6": "countryName", "2.5.4.7": "localityName",
         "2.5.4.8": "stateOrProvinceName", "2.5.4.10": "organizationName",
         "2.5.4.11": "organizationalUnitName", "1.2.840.113549.1.9.1": "emailAddress",
         "2.5.4.5": "serialNumber"}


def parse_certificate(der: bytes) -> dict:
    """subject, issuer ([(attribute, value)]), not_before/not_after (ISO), names (SANs) of an
    X.509 certificate, in nmap's ssl-cert terms."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)

    def name(n) -> list:
        return [(_OIDS.get(a.oid.dotted_string, a.oid.dotted_string),
                 a.value if isinstance(a.value, str) else a.value.hex()) for a in n]
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        alt = []          # type: ignore[assignment]
    names = [f"DNS:{g.value}" if isinstance(g, x509.DNSName) else f"IP Address:{g.value}"
             for g in alt if isinstance(g, (x509.DNSName, x509.IPAddress))]
    iso = "%Y-%m-%dT%H:%M:%S"
    return {"subject": name(cert.subject), "issuer": name(cert.issuer), "names": names,
            "not_before": cert.not_valid_before_utc.strftime(iso),
            "not_after": cert.not_valid_after_utc.strftime(iso)}


def cert_text(cert: dict) -> str:
    """nmap's ssl-cert script output."""
    def dn(items):
        return "/".join(f"{k}={v}" for k, v in items)
    lines = [f"Subject: {dn(cert['subject'])}"]
    if cert["names"]:
        lines.append("Subject Alternative Name: " + ", ".join(cert["names"]))
    lines += [f"Issuer: {dn(cert['issuer'])}", f"Not valid before: {cert['not_before']}",
              f"Not valid after:  {cert['not_after']}"]
    return "\n".join(lines)


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


def http_title(data: bytes) -> Optional[str]:
    if not data.startswith(b"HTTP/"):
        return None
    m = _TITLE.search(data)
    if m:
        return " ".join(m.group(1).decode("utf-8", "replace").split())[:200]
    return None
