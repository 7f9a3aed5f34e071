"""nmap's own formats, rendered per host at the end: normal (-oN), grepable (-oG) and XML (-oX)."""
from __future__ import annotations

from ..ports import format_ports as port_ranges, service_name
from .base import Writer, done_line, escape_for_screen, nmap_time, register, rows_to_dicts
from .hosts import host_block


@register
class NormalWriter(Writer):
    """-oN: nmap's normal output, the terminal table with nmap's # header and footer lines."""
    name, option, suffix, grouped = "normal", "-oN", ".nmap", True

    header = Writer.nmap_comment_header

    def footer(self, summary):
        n_up = 0
        traced: dict = {}
        for v in self.views():
            n_up += 1
            reason, ttl = v.status_reason
            out = host_block(v, self.reason, title="Nmap scan report for", name=self.names.get(v.addr, ""))[:1]
            out += [f"Host is up, received {reason}" + (f" ttl {ttl}" if ttl else "") + ".", ""]
            trace = self.traces.get(v.addr)
            out += host_block(v, self.reason, services=self.services, os_guess=self.os_guesses.get(v.addr),
                              trace=trace, earlier=traced)[1:] + [""]
            if trace is not None:
                traced[v.addr] = trace
            self.file.write("\n".join(out) + "\n")
        out = []
        if summary.error:
            out.append(f"# scan failed ({summary.error}): results are partial")
        elif summary.interrupted:
            out.append("# scan interrupted: results are partial")
        out.append("# " + done_line(self.info, summary, n_up))
        self.file.write("\n".join(out) + "\n")


@register
class XmlWriter(Writer):
    """-oX: nmap's XML (valid against nmap.dtd), read by ndiff, python-libnmap, Metasploit & co."""
    name, option, suffix, grouped = "xml", "-oX", ".xml", True

    def header(self):
        i = self.info
        start = int(i.start)
        self.file.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
            f"<!-- {i.scanner} {i.version} scan initiated {nmap_time(i.start)} as: {_comment(i.command)} -->\n"
            f'<nmaprun scanner="nmap" args={quoteattr(i.command)} start="{start}" '
            f'startstr={quoteattr(nmap_time(i.start))} version={quoteattr(i.version)} xmloutputversion="1.05">\n'
            + "".join(f'<scaninfo type="{kind}" protocol="{proto}" numservices="{len(set(ports))}" '
                      f'services="{port_ranges(ports)}"/>\n'
                      for kind, proto, ports in (i.scaninfo or ((i.scan_type, i.protocol, i.ports),)))
            + '<verbose level="0"/>\n<debugging level="0"/>\n')

    def footer(self, summary):
        i = self.info
        start, end = int(i.start), int(i.start + summary.elapsed)
        n_up = 0
        w = self.file.write
        for v in self.views():
            n_up += 1
            reason, ttl = v.status_reason
            w(f'<host starttime="{start}" endtime="{end}"><status state="up" reason="{reason}" '
              f'reason_ttl="{ttl}"/>\n<address addr="{v.addr}" addrtype="{"ipv6" if v.ipv6 else "ipv4"}"/>\n'
              '<hostnames>\n' + (f'<hostname name={quoteattr(self.names[v.addr])} type="PTR"/>\n'
                                  if v.addr in self.names else "") + '</hostnames>\n<ports>')
            for state, proto, n, why in v.folded:
                w(f'<extraports state="{state}" count="{n}">\n')
                for r, c, ports in why:
                    w(f'<extrareasons reason="{r}" count="{c}" proto="{proto}" ports="{port_ranges(ports)}"/>\n')
                w("</extraports>\n")
            for d in rows_to_dicts(v.shown):
                w(f'<port protocol="{d["proto"]}" portid="{d["port"]}"><state state="{d["state"]}" '
                  f'reason="{d["reason"]}" reason_ttl="{d["ttl"] or 0}"/>'
                  f'{service_xml(self.services.get((v.addr, d["proto"], d["port"])), d["port"], d["proto"])}</port>\n')
            w("</ports>\n")
            if v.addr in self.os_guesses:
                w(os_xml(self.os_guesses[v.addr], v.rows))
            if v.addr in self.traces:
                from ..traceroute import trace_xml
                w(trace_xml(self.traces[v.addr], self.names))
            w("</host>\n")
        n = i.n_hosts
        summ = done_line(i, summary, n_up)
        exit_attr = (f'exit="error" errormsg={quoteattr(summary.error or "interrupted")}' if summary.interrupted
                     else 'exit="success"')
        w(f'<runstats><finished time="{end}" timestr={quoteattr(nmap_time(i.start + summary.elapsed))} '
          f'summary={quoteattr(summ)} elapsed="{summary.elapsed:.2f}" {exit_attr}/>'
          f'<hosts up="{n_up}" down="{max(0, n - n_up)}" total="{n}"/>\n</runstats>\n</nmaprun>\n')


@register
class GrepableWriter(Writer):
    """-oG: nmap's grepable format, one Status and one Ports line per host."""
    name, option, suffix, grouped = "grepable", "-oG", ".gnmap", True

    header = Writer.nmap_comment_header

    def footer(self, summary):
        n_up = 0
        for v in self.views():
            n_up += 1
            name = self.names.get(v.addr, "")
            out = [f"Host: {v.addr} ({name})\tStatus: Up"]
            shown = list(rows_to_dicts(v.shown))
            if shown and shown[0]["proto"] == "ip":     # -sO: nmap's Protocols: number/state/name/
                ports = ", ".join(f"{d['port']}/{d['state']}/{service_name(d['port'], 'ip').replace('unknown', '')}/"
                                  for d in shown)
                line = f"Host: {v.addr} ({name})\tProtocols: {ports}"
            else:
                ports = ", ".join(f"{d['port']}/{d['state']}/{d['proto']}//{self._service(v.addr, d)}/"
                                  for d in shown)
                line = f"Host: {v.addr} ({name})\tPorts: {ports}"
            if v.folded:   # nmap names only one ignored state; the largest
                state, _, n, _ = max(v.folded, key=lambda f: f[2])
                line += f"\tIgnored State: {state} ({n})"
            g = self.os_guesses.get(v.addr)
            if g is not None and g.matches is not None:     # nmap's database: its exact matches only
                exact = [m["name"] for m in g.matches if m["accuracy"] == 100]
                line += f"\tOS: {'|'.join(exact)}" if exact else ""
            elif g is not None:
                line += f"\tOS: {g.name}"
            out.append(line)
            self.file.write("\n".join(out) + "\n")
        self.file.write("# " + done_line(self.info, summary, n_up) + "\n")

    def _service(self, addr: str, d: dict) -> str:
        """service//version/ of a Ports entry; nmap writes "/" inside a field as "|"."""
        svc = self.services.get((addr, d["proto"], d["port"])) if self.services else None
        if svc is None:
            return f"{service_name(d['port'], d['proto'])}//"
        name = f"ssl|{svc.name}" if svc.tunnel == "ssl" else svc.name
        return f"{name}//{escape_for_screen(svc.version_text, newline=False).replace('/', '|')}"


def xml_escape(text: str) -> str:
    """&, < and > as entities (xml.sax.saxutils.escape, without its import cost at start-up)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoteattr(text: str) -> str:
    """An XML attribute value in double quotes (as xml.sax.saxutils.quoteattr writes it)."""
    text = xml_escape(text).replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    if '"' not in text:
        return f'"{text}"'
    return f"'{text}'" if "'" not in text else '"' + text.replace('"', "&quot;") + '"'


def _comment(text: str) -> str:
    return text.replace("--", "-\u2010")     # "--" may not appear inside an XML comment


def service_xml(svc, port: int, proto: str) -> str:
    """nmap's <service> element (and <script> elements) of a port; the services table's guess
    (method="table") when -sV found nothing."""
    if svc is None:
        return f'<service name={quoteattr(service_name(port, proto))} method="table" conf="3"/>'
    attrs = [("name", svc.name), ("product", svc.product), ("version", svc.version),
             ("extrainfo", svc.extrainfo), ("hostname", svc.hostname), ("ostype", svc.ostype),
             ("devicetype", svc.devicetype), ("tunnel", svc.tunnel)]
    head = "<service " + " ".join(f"{k}={quoteattr(_xml_chars(v))}" for k, v in attrs if v)
    head += f' method="{svc.method}" conf="{svc.conf}"'
    cpes = "".join(f"<cpe>{xml_escape(c)}</cpe>" for c in svc.cpes)
    out = head + (f">{cpes}</service>" if cpes else "/>")
    for sid, text in sorted(svc.scripts.items()):
        out += script_xml(sid, text, svc.script_data.get(sid))
    return out


def script_xml(sid: str, text: str, data=None) -> str:
    """nmap's <script id output>, with its structured values as NSE writes them: a dict's
    entries as <elem key=..> (or <table key=..> when nested), a list's without key."""
    head = f"<script id={quoteattr(sid)} output={quoteattr(_xml_chars(text))}"
    if data is None or data == {} or data == []:
        return head + "/>"

    def body(value) -> str:
        items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
        out = ""
        for k, v in items:
            key = "" if k is None else f" key={quoteattr(_xml_chars(str(k)))}"
            if isinstance(v, (dict, list)):
                out += f"<table{key}>\n{body(v)}</table>\n"
            else:
                out += f"<elem{key}>{xml_escape(_xml_chars(str(v)))}</elem>\n"
        return out
    return head + ">" + body(data if isinstance(data, (dict, list)) else [data]) + "</script>"


def os_xml_nmapdb(g) -> str:
    """<os> from nmap's database (-O with nmap-os-db), as nmap writes it."""
    out = ["<os>"] + [f'<portused state="{st}" proto="{pr}" portid="{port}"/>' for st, pr, port in g.ports_used]
    for m in g.matches:
        out.append(f'<osmatch name={quoteattr(m["name"])} accuracy="{m["accuracy"]}" line="{m["line"]}">')
        for c in m["classes"]:
            attrs = f'type={quoteattr(c["type"])} vendor={quoteattr(c["vendor"])} osfamily={quoteattr(c["osfamily"])}' \
                + (f' osgen={quoteattr(c["osgen"])}' if c["osgen"] else "") + f' accuracy="{c["accuracy"]}"'
            cpes = "".join(f"<cpe>{xml_escape(x)}</cpe>" for x in c["cpe"])
            out.append(f"<osclass {attrs}>{cpes}</osclass>" if cpes else f"<osclass {attrs}/>")
        out.append("</osmatch>")
    if "TCP/IP fingerprint:" in g.lines:      # nmap writes it where it prints it
        out.append(f'<osfingerprint fingerprint={quoteattr(g.nmap_fingerprint)}/>')
    out.append("</os>")
    if g.distance >= 0:
        out.append(f'<distance value="{g.distance}"/>')
    return "\n".join(out) + "\n"


def _xml_chars(text: str) -> str:
    """Without the control characters XML 1.0 cannot carry (servers' banners may hold any byte)."""
    return "".join(c for c in text if c >= " " or c in "\t\n\r")


def os_xml(g, rows) -> str:
    """nmap's <os> element of a host."""
    if g.matches is not None:
        return os_xml_nmapdb(g)
    out = ["<os>"]
    fp = g.fingerprint
    if fp is not None and fp.port:
        out.append(f'<portused state="open" proto="tcp" portid="{fp.port}"/>')
    if fp is not None and fp.closed_port:
        out.append(f'<portused state="closed" proto="tcp" portid="{fp.closed_port}"/>')
    for name, acc, family, vendor, osgen, typ, cpe in [(g.name, g.accuracy, g.family, g.vendor, g.osgen, g.type,
                                                        g.cpes[0] if g.cpes else "")] + list(g.others):
        out.append(f'<osmatch name={quoteattr(name)} accuracy="{acc}" line="0">')
        for gen in (osgen or "").split("|"):
            attrs = f'type={quoteattr(typ or "general purpose")} vendor={quoteattr(vendor if vendor != "*" else family)} ' \
                    f'osfamily={quoteattr(family)}' + (f' osgen={quoteattr(gen)}' if gen and gen != "*" else "")
            out.append(f'<osclass {attrs} accuracy="{acc}">' + (f"<cpe>{xml_escape(cpe)}</cpe>" if cpe else "")
                       + "</osclass>")
        out.append("</osmatch>")
    out.append("</os>")
    return "\n".join(out) + "\n"
