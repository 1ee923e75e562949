"""Progress for long commands: a rich bar on a terminal, plain periodic lines elsewhere.

Without a TTY (CI logs, ``nohup``, a pipe), a rich bar is switched off, and a 37 s sweep used
to print nothing until its end. :class:`LineProgress` prints one line at most every
:func:`interval` seconds (``LIQSIM_PROGRESS_SECONDS``, default 10), and a last one at the end
if any was printed::

    liqsim: tiny: 12/40 runs (30 %), 9.8 s
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

ENV = "LIQSIM_PROGRESS_SECONDS"
DEFAULT_SECONDS = 10.0


def interval() -> float:
    """Seconds between two progress lines: ``$LIQSIM_PROGRESS_SECONDS`` (>= 0) or 10."""
    try:
        value = float(os.environ.get(ENV, DEFAULT_SECONDS))
    except ValueError:
        return DEFAULT_SECONDS
    return value if value >= 0 else DEFAULT_SECONDS


class LineProgress:
    """Periodic plain progress lines for one task: ``update(completed, total)`` and ``done()``."""

    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO | None = None,
                 every: float | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every = interval() if every is None else every
        self.t0 = self.last = time.monotonic()
        self.completed = 0
        self.printed: int | None = None

    def update(self, completed: int | None = None, total: int | None = None,
               advance: int = 0) -> None:
        if total is not None:
            self.total = total
        self.completed = (self.completed if completed is None else completed) + advance
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def done(self) -> None:
        """A last line if earlier ones were printed (a short command stays quiet) and the
        last one did not already say the same."""
        if self.printed is not None and self.printed != self.completed:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.completed / self.total:.0f} %)" if self.total else ""
        self.stream.write(f"liqsim: {self.label}: {self.completed}{of} {self.unit}{pct}, "
                          f"{now - self.t0:.1f} s\n")
        self.stream.flush()
        self.printed = self.completed
