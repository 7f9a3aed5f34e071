"""What a scan hands on, in every format at once: the files of -oN (nmap's normal text), -oX
(nmap's XML), -oG (grepable), -oJ (NDJSON), --csv and -oL (masscan's list), and the terminal report
(an nmap-like table per host for small scans, one line per open port as found for large ones).

Each format is one Writer class with the same small interface: write(rows) as results arrive
(RESULT_DTYPE arrays), set_details(services, os) when -sV/-O are done, close(summary) at the end;
it registers with @register, declaring its name, option and -oA suffix, and nothing else needs to
change to add one. Streaming formats write as they go; the formats nmap groups by host share one
buffer of rows and render it at the end. A writer whose file fails (e.g. disk full) stops writing
and keeps the error for the caller to report: the scan itself goes on."""
from .base import (FORMATS, RowBuffer, ScanInfo, Writer, done_line, escape_for_screen, nmap_time, port_ranges, register,
                   rows_to_dicts)
from .hosts import HostView, host_block, host_views
from .nmap import GrepableWriter, NormalWriter, XmlWriter
from .outputs import BackgroundSink, Outputs, by_option, make_writer, plan_outputs
from .streams import CsvWriter, ListWriter, NdjsonWriter
from .binary import BinaryWriter
from .terminal import HostTable, OpenPortLines

__all__ = ["FORMATS", "RowBuffer", "ScanInfo", "Writer", "done_line", "escape_for_screen", "nmap_time", "port_ranges", "register",
           "rows_to_dicts", "HostView", "host_block", "host_views", "GrepableWriter", "NormalWriter", "XmlWriter",
           "BackgroundSink", "Outputs", "by_option", "make_writer", "plan_outputs", "BinaryWriter", "CsvWriter", "ListWriter",
           "NdjsonWriter", "HostTable", "OpenPortLines"]
