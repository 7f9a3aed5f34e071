"""`python -m scanner.cluster TARGETS ... --cluster tcp://HOST:8786`: the scan command, with
every raw scan stage run by the cluster (ClusterScan in the engine's place). Everything else
-- options, outputs, the store, Ctrl-C and the resume file -- is the scan command's own; the
resume file it writes also resumes on one machine (`scanner --resume FILE`)."""
from __future__ import annotations

import sys

from .. import cli, engine
from ..errors import InputError


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    address = None
    if "--cluster" in argv:
        i = argv.index("--cluster")
        if i + 1 >= len(argv):
            print("scanner: error: --cluster needs the scheduler's address (tcp://HOST:8786)", file=sys.stderr)
            sys.exit(2)
        address = argv[i + 1]
        del argv[i:i + 2]
    if address is None:
        print("scanner: error: --cluster ADDR is required here", file=sys.stderr)
        sys.exit(2)
    from .coordinator import ClusterScan, connect
    try:
        client = connect(address)
    except InputError as e:
        print(f"scanner: error: {e}", file=sys.stderr)
        sys.exit(2)

    quiet = "-q" in argv or "--quiet" in argv

    class Scan(ClusterScan):
        def __init__(self, config, resume=None):
            super().__init__(config, resume, client=client, address=address)
            if not quiet:
                self.note = lambda text: print(f"scanner: {text}", file=sys.stderr, flush=True)

        def run(self, sink):
            summary = super().run(sink)
            for line in self.worker_lines():
                self.note(f"worker {line}")
            return summary

    engine.Scan = Scan
    try:
        cli.main(argv)
    finally:
        try:
            client.close(timeout=2)
        except Exception:  # noqa: BLE001 -- the scheduler may be gone
            pass


if __name__ == "__main__":
    main()
