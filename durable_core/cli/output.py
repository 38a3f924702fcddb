"""Terminal output: aligned tables, coloured statuses, truncated payloads, a progress bar, JSON.

Standard library only -- the command line has no dependencies. Colour follows the usual
conventions: ``--color always|never|auto`` (auto: only on a terminal), ``NO_COLOR`` turns it
off, ``FORCE_COLOR`` on. The progress bar draws on standard error and only on a terminal, so
piped output stays clean.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any, Optional, Sequence

__all__ = ["Style", "table", "truncate", "payload_text", "print_json", "Progress"]

_RESET = "\x1b[0m"
_CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}
STATUS_COLORS = {
    "Pending": "dim",
    "Running": "blue",
    "ContinuedAsNew": "blue",
    "Suspended": "cyan",
    "Completed": "green",
    "Failed": "red",
    "Terminated": "yellow",
    "Canceled": "yellow",
}


class Style:
    """Colours on or off for one stream."""

    def __init__(self, mode: str = "auto", stream: Optional[IO[str]] = None) -> None:
        stream = stream or sys.stdout
        if mode == "always":
            self.enabled = True
        elif mode == "never":
            self.enabled = False
        elif os.environ.get("NO_COLOR"):
            self.enabled = False
        elif os.environ.get("FORCE_COLOR"):
            self.enabled = True
        else:
            isatty = getattr(stream, "isatty", None)
            self.enabled = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"

    def __call__(self, text: str, color: Optional[str]) -> str:
        """``text`` in ``color`` (a name of :data:`_CODES`) when colours are on."""
        if not self.enabled or not color or color not in _CODES:
            return text
        return f"\x1b[{_CODES[color]}m{text}{_RESET}"

    def status(self, name: str) -> str:
        """A status name in its colour."""
        return self(name, STATUS_COLORS.get(name))


def truncate(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters (``…`` marks a cut)."""
    one = " ".join(text.split()) if ("\n" in text or "\r" in text or "\t" in text) else text
    if width <= 0 or len(one) <= width:
        return one
    return one[: max(0, width - 1)] + "…"


def payload_text(value: Any, *, indent: Optional[int] = None) -> str:
    """A decoded payload as JSON text (``repr`` for what JSON cannot spell)."""
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False, default=repr)
    except (ValueError, TypeError):
        return repr(value)


def _safe(text: str) -> str:
    """Control characters from user data shown as escapes: a payload cannot move the cursor,
    clear the screen or fake a colour in the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    style: Optional[Style] = None,
    colors: Optional[Sequence[Optional[Any]]] = None,
    out: Optional[IO[str]] = None,
) -> None:
    """Print ``rows`` under ``headers`` in aligned columns (two spaces apart).

    ``colors``: per column, ``None`` or a function ``cell text -> colour name`` applied after
    padding (so escape codes never break the alignment).
    """
    out = out or sys.stdout
    style = style or Style("never")
    cells = [[_safe(str(c)).replace("\n", " ") for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    last = len(headers) - 1
    head = "  ".join(h.ljust(widths[i]) if i < last else h for i, h in enumerate(headers))
    out.write(style(head, "bold") + "\n")
    for r in cells:
        parts = []
        for i, c in enumerate(r):
            padded = c.ljust(widths[i]) if i < last else c
            pick = colors[i] if colors and i < len(colors) else None
            parts.append(style(padded, pick(c)) if pick else padded)
        out.write("  ".join(parts).rstrip() + "\n")


def print_json(value: Any, out: Optional[IO[str]] = None) -> None:
    """``value`` as indented JSON on standard output (what ``--json`` prints)."""
    out = out or sys.stdout
    out.write(json.dumps(value, indent=2, ensure_ascii=False, default=repr) + "\n")


def print_safe(text: str, out: Optional[IO[str]] = None) -> None:
    """A line of text that may hold user data (control characters escaped)."""
    (out or sys.stdout).write(_safe(text) + "\n")


class Progress:
    """A one-line progress bar on standard error: ``[#####.....] 50/100  2.1 s``.

    Drawn only when standard error is a terminal (and at most ~10 times a second); otherwise
    it stays silent and the command prints its count at the end.
    """

    def __init__(self, total: int, label: str, stream: Optional[IO[str]] = None) -> None:
        self.total = max(0, total)
        self.label = label
        self.done = 0
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self._start = time.monotonic()
        self._drawn = 0.0

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more done and redraw (throttled)."""
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._drawn >= 0.1 or self.done >= self.total):
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        width = 30
        frac = (self.done / self.total) if self.total else 1.0
        filled = int(width * min(1.0, frac))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {self.done}/{self.total}  {now - self._start:.1f} s"
        )
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
