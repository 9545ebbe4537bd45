"""Text progress bars for the long steps of `edgeseal board` (writing files, flashing)."""

from __future__ import annotations

import sys
from typing import TextIO

BAR_CHARS = 30  # why: fits an 80-column terminal with the label and the counts


class Progress:
    """A one-line bar on stream (stderr by default), redrawn in place; update(done, total)."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self._last = -1

    def update(self, done: int, total: int) -> None:
        """Redraw the bar for done of total units (bytes, files); returns nothing."""
        pct = 100 if total <= 0 else min(100, done * 100 // total)
        if pct == self._last:
            return
        self._last = pct
        filled = pct * BAR_CHARS // 100
        bar = "#" * filled + "." * (BAR_CHARS - filled)
        self.stream.write(f"\r{self.label:<24} [{bar}] {pct:3d}% {done}/{total}")
        if pct == 100:
            self.stream.write("\n")
        self.stream.flush()
