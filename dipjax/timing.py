"""Where a run's wall time goes: named parts timed with one stopwatch.

Parts (seconds): ``startup`` (interpreter, imports, device start), ``prepare`` (reading inputs,
building problems, nets, initial states), ``compile``, ``steps`` (waiting for the device to
finish chunks of steps), ``host`` (the loop's work between chunks: metrics, history, progress),
``checkpoint``, ``snapshot``, ``outputs`` (writing files), ``other`` (the rest) and ``total``.
Moments (seconds since the process started) end in ``_at``: ``first_chunk_at`` is when the
first chunk of steps was back on the host.
"""

from __future__ import annotations

import contextlib
import os
import time


def process_start_age() -> float:
    """Seconds since this process started (0 where the system does not say)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


class Timing:
    """Accumulates seconds per part; ``summary()`` adds 'other' and 'total' since ``start``
    (a ``time.perf_counter()`` value; default: now) plus ``before`` seconds spent earlier."""

    def __init__(self, start: float | None = None, before: float = 0.0):
        self.start = time.perf_counter() if start is None else start
        self.before = before
        self.parts = {"startup": before} if before else {}
        self.marks = {}

    def mark(self, name: str) -> None:
        """Remember now as ``name`` (once)."""
        if name not in self.marks:
            self.marks[name] = time.perf_counter() - self.start + self.before

    @contextlib.contextmanager
    def __call__(self, part: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(part, time.perf_counter() - t)

    def add(self, part: str, seconds: float) -> None:
        self.parts[part] = self.parts.get(part, 0.0) + seconds

    def summary(self) -> dict:
        total = time.perf_counter() - self.start + self.before
        out = dict(self.parts)
        out["other"] = max(0.0, total - sum(self.parts.values()))
        out["total"] = total
        out.update(self.marks)
        return {k: round(v, 4) for k, v in out.items()}
