"""All outputs of one scan: the plan of files (-o options, -oA), the writers behind one
write(rows)/close(summary), and the sink that feeds them off the capture thread."""
from __future__ import annotations

import os
from typing import Optional, Type

import numpy as np

from ..errors import InputError
from .base import FORMATS, RowBuffer, ScanInfo, Writer


def by_option(option: str) -> Type[Writer]:
    return next(cls for cls in FORMATS.values() if cls.option == option)


def plan_outputs(options: dict, all_basename: Optional[str] = None) -> list:
    """[(option, path)] from {option: path or None} and -oA BASENAME; checks the paths can be
    told apart (one stdout, no file twice). Raises InputError."""
    plan = [(opt, path) for opt, path in options.items() if path]
    if all_basename:
        if all_basename == "-":
            raise InputError("-oA needs a base file name, not '-' (use -oN/-oX/-oG - for stdout)")
        plan += [(cls.option, all_basename + cls.suffix) for cls in FORMATS.values() if cls.suffix]
    if sum(path == "-" for _, path in plan) > 1:
        raise InputError("only one output can go to stdout ('-'): "
                         + ", ".join(opt for opt, path in plan if path == "-"))
    seen: dict = {}
    for opt, path in plan:
        if path == "-":
            continue
        real = os.path.realpath(path)
        if real in seen:
            raise InputError(f"{seen[real]} and {opt} both write '{path}'")
        seen[real] = opt
    return plan


def make_writer(option: str, path: str, info: ScanInfo, buffer: Optional[RowBuffer] = None,
                show_all: bool = False, reason: bool = False, append: bool = False, details: bool = False,
                append_output: bool = False):
    """details: -sV/-O results will be set (set_details) before close(); append_output
    (--append-output): add to the files instead of replacing them."""
    return by_option(option)(path, info, buffer, show_all=show_all, append=append, reason=reason,
                             details=details, append_output=append_output)


class Outputs:
    """Every output of a scan behind one write(rows)/close(summary). Never raises on a failed
    write: errors() lists what failed, so the scan goes on and the store keeps everything."""

    def __init__(self, plan: list, info: ScanInfo, show_all: bool = False, reason: bool = False,
                 resumed: Optional[np.ndarray] = None, details: bool = False, append_output: bool = False):
        """resumed: the rows an interrupted run already wrote; streams append after them.
        details: -sV/-O results will come (set_details) before close(): NDJSON and CSV hold
        their open ports back to write them with the service and OS."""
        self.buffer = RowBuffer()
        if resumed is not None:
            self.buffer.append(resumed)
        self.writers: list = []
        try:
            for opt, path in plan:
                self.writers.append(make_writer(opt, path, info, self.buffer, show_all, reason,
                                                append=resumed is not None, details=details,
                                                append_output=append_output))
        except InputError:
            self.close(None)
            raise
        self.buffered = any(w.grouped for w in self.writers)

    def set_details(self, services=None, os_guesses=None, names=None, traces=None) -> None:
        """-sV's {(addr, proto, port): ServiceInfo}, -O's {addr: OsGuess}, -R's {addr: name},
        --traceroute's {addr: Trace}, before close()."""
        for w in self.writers:
            w.set_details(services, os_guesses, names, traces)

    def set_more_hosts(self, more) -> None:
        for w in self.writers:
            w.set_more_hosts(more)

    def write(self, rows: np.ndarray) -> None:
        if self.buffered:
            self.buffer.append(rows)
        for w in self.writers:
            if not w.grouped:
                w.write(rows)

    def close(self, summary) -> None:
        for w in self.writers:
            w.close(summary)

    def errors(self) -> list:
        return [w.error for w in self.writers if w.error]


class BackgroundSink:
    """A scan's sink that hands each batch to a thread writing it to every consumer (the store,
    the outputs) in order: the capture thread never waits on a disk or a database. close()
    drains the queue; a bug in a consumer is re-raised there, not lost in the thread."""

    def __init__(self, consumers):
        import queue
        import threading
        self.consumers = [c for c in consumers if c is not None]
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.exc: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="outputs", daemon=True)
        self.thread.start()

    def __call__(self, rows: np.ndarray) -> None:
        self.queue.put(rows)

    def _run(self) -> None:
        while True:
            rows = self.queue.get()
            if rows is None:
                return
            if self.exc is not None:
                continue
            try:
                for c in self.consumers:
                    c.write(rows)
            except BaseException as e:      # noqa: B036 - re-raised by close()
                self.exc = e

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if self.exc is not None:
            exc, self.exc = self.exc, None
            raise exc
