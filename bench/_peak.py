"""Run a command and write its peak RSS in bytes to a file: `python bench/_peak.py OUT ARGV...`.

A process forked from a large one starts with that one's high-water mark: Linux keeps the larger of
the old memory's peak and the new one's across exec, so wait4's ru_maxrss of a child of bench_e2e
(which holds a whole simulated fleet, ~400 MiB) said ~400 MiB for every command (session 9). Forked
from this small process instead, the command's peak is its own. Exits with the command's exit code;
a SIGTERM (run_timed's timeout) kills the command first, so none is left running behind a bench.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    _, status, usage = os.wait4(pid, 0)
    with open(out, "w") as f:
        f.write(str(usage.ru_maxrss * 1024))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
