"""The ``liqsim`` command (and ``python -m sim``).

A Ctrl-C (or ``timeout -s INT``) while the command line is still loading its modules exits
with code 130 and one line, instead of a traceback of the imports.
"""

from __future__ import annotations

import signal
import sys


def _interrupted_while_loading(_signum, _frame) -> None:
    sys.stderr.write("liqsim: interrupted\n")
    raise SystemExit(130)


def main(argv: list[str] | None = None) -> int:
    previous = signal.signal(signal.SIGINT, _interrupted_while_loading)
    try:
        from sim.cli import main as cli_main  # lazy: loaded while Ctrl-C exits quietly
    finally:
        signal.signal(signal.SIGINT, previous)
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
