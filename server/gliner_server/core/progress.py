"""Health that follows progress: a server whose history or model passes are stuck says so.

A server can answer health checks while the work it exists for does not move:
a history commit that never returns (PostgreSQL not answering, a locked SQLite
file), commits that keep failing (a read-only file), a model pass that hangs.
:class:`ProgressWatch` polls the sources of progress and reports "stalled"
when one of them has not moved for ``stall_s`` seconds, and "moving" again once
it has; the gRPC server turns that into NOT_SERVING / SERVING, so that Envoy,
a load balancer or Kubernetes route around it meanwhile. While commits fail,
it also asks the history to try a write now and then (with no traffic routed
to a NOT_SERVING server, nothing else would notice that the database is back).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

# A source: (how long it has not progressed, why) once that is beyond its own limit; None when it is fine.
Source = Callable[[], tuple[float, str] | None]


class ProgressWatch:
    def __init__(self, sources: Callable[[], Iterable[Source]], *,
                 on_change: Callable[[str | None], None], probe: Callable[[], bool] | None = None,
                 interval_s: float = 0.25, probe_every_s: float = 1.0):
        self.sources, self.on_change, self.probe = sources, on_change, probe
        self.interval_s, self.probe_every_s = interval_s, probe_every_s
        self.stalled: str | None = None     # the reason, while stalled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_probe = 0.0

    def start(self) -> ProgressWatch:
        self._thread = threading.Thread(target=self._run, name="progress-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def check(self) -> str | None:
        """One look at every source; the reason the server is stalled, or None. Reports changes."""
        if self.probe is not None and time.monotonic() - self._last_probe >= self.probe_every_s:
            self._last_probe = time.monotonic()
            try:
                self.probe()
            except Exception:  # a failed probe is one more failure, never a crash
                logger.exception("history probe failed")
        reason = None
        for source in self.sources():
            found = source()
            if found is not None:
                reason = found[1]
                break
        if (reason is None) != (self.stalled is None):
            if reason is None:
                logger.warning("progress again (was: %s): SERVING", self.stalled)
            else:
                logger.error("no progress (%s): NOT_SERVING until it moves again", reason)
            self.on_change(reason)
        self.stalled = reason
        return reason

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the watch must keep watching
                logger.exception("progress watch failed")
