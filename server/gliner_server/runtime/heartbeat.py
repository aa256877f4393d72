"""Periodic progress lines for long work with no natural progress of its own (a first-use conversion).

While a :class:`Heartbeat` is open, a thread logs ``"<what>: <step> (<elapsed>s elapsed)"`` every
``interval_s`` seconds in which nothing else was reported, so that an operator watching the log of a starting
server sees what it is doing and for how long, on a terminal and in a log file alike. ``step(text)`` names
the current step (logged at once, with the elapsed time). ``GLINER2_PROGRESS_SECONDS`` sets the interval.
"""
from __future__ import annotations

import logging
import os
import threading
import time

DEFAULT_INTERVAL_S = 10.0


def interval_from_env() -> float:
    try:
        return max(0.1, float(os.environ.get("GLINER2_PROGRESS_SECONDS", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


class Heartbeat:
    def __init__(self, what: str, logger: logging.Logger, interval_s: float | None = None):
        self.what, self.logger = what, logger
        self.interval_s = interval_from_env() if interval_s is None else interval_s
        self.started = time.monotonic()
        self._step = "starting"
        self._last = self.started
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="progress", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(timeout=1.0)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, text: str) -> None:
        self._step, self._last = text, time.monotonic()
        self.logger.info("%s: %s (%.1fs elapsed)", self.what, text, self.elapsed)

    def _beat(self) -> None:
        while not self._done.wait(self.interval_s / 4):
            if time.monotonic() - self._last >= self.interval_s:
                self._last = time.monotonic()
                self.logger.info("%s: still at %s (%.0fs elapsed)", self.what, self._step, self.elapsed)
