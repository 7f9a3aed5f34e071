"""What -sV found on a port: the service, product, version and the script outputs (nmap's fields)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServiceInfo:
    """What -sV found on one port (nmap's <service> element)."""
    name: str
    product: str = ""
    version: str = ""
    extrainfo: str = ""
    hostname: str = ""
    ostype: str = ""
    devicetype: str = ""
    tunnel: str = ""                 # "ssl" when the service was found inside TLS
    cpes: list = field(default_factory=list)
    method: str = "probed"           # "table" when nothing matched (name from the services table)
    conf: int = 10
    scripts: dict = field(default_factory=dict)   # nmap script id -> output text (http-title, ssl-cert)
    script_data: dict = field(default_factory=dict)   # script id -> its structured values (-oX <elem>s)
    guess: bool = False      # probed but not recognised: the services table's name, shown "name?"

    @property
    def display_name(self) -> str:
        return (f"ssl/{self.name}" if self.tunnel == "ssl" else self.name) + ("?" if self.guess else "")

    @property
    def version_text(self) -> str:
        """nmap's VERSION column: product version (extrainfo)."""
        text = " ".join(x for x in (self.product, self.version) if x)
        if self.extrainfo:
            text += f" ({self.extrainfo})" if text else self.extrainfo
        return text

    def to_dict(self) -> dict:
        d: dict = {"name": self.name}
        for k in ("product", "version", "extrainfo", "hostname", "ostype", "devicetype", "tunnel"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        if self.cpes:
            d["cpe"] = list(self.cpes)
        d["method"], d["conf"] = self.method, self.conf
        if self.scripts:
            d["scripts"] = dict(self.scripts)
        if self.script_data:
            d["script_data"] = dict(self.script_data)
        if self.guess:
            d["guess"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ServiceInfo":
        kw = {k: d[k] for k in ("name", "product", "version", "extrainfo", "hostname", "ostype", "devicetype",
                                "tunnel", "method", "conf") if k in d}
        return cls(cpes=list(d.get("cpe", [])), scripts=dict(d.get("scripts", {})),
                   script_data=dict(d.get("script_data", {})), guess=bool(d.get("guess")), **kw)
