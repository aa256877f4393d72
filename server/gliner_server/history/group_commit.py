"""Group commit on a writer thread: concurrent writers share one transaction, each durable on return.

Every inference is committed before its answer is sent. Committing costs a
synchronous flush (``fsync`` of SQLite's WAL, or PostgreSQL's WAL flush), so
under load one commit per request would serialise the requests on the disk.
Here request threads hand their rows to one writer thread and wait; the writer
commits everything queued so far in one transaction, then the next group. A
lone writer commits alone, as before.

A request thread waits at most ``timeout`` seconds. A database that stops
answering (PostgreSQL paused, a locked SQLite file) then stalls only the writer
thread: callers get :class:`CommitTimeout` in time, rows that had not yet been
taken into a commit are dropped (never stored, never acknowledged), and the
writer carries on where it was once the database answers again. Rows already in
the stalled commit may still be stored after their caller gave up; a retry of
the same call is recognised by its request id (see ``HistoryStore``).

If a shared commit fails, each writer's rows are retried in their own
transaction, so one bad row never fails another request.

:attr:`GroupCommit.busy_for` and :attr:`GroupCommit.failing_for` tell how long the
current commit has run and how long commits have been failing: the server's
health follows them (``core.progress``).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Row = TypeVar("Row")


class CommitTimeout(Exception):
    """The rows were not committed within the time the caller waits.

    ``in_flight``: they were already part of a commit that has not finished (they
    may be stored later); otherwise they were dropped before any attempt.
    """

    def __init__(self, timeout: float, in_flight: bool):
        super().__init__(f"no commit within {timeout:.3g}s")
        self.timeout, self.in_flight = timeout, in_flight


@dataclass(eq=False)
class _Ticket(Generic[Row]):
    rows: Sequence[Row]
    done: threading.Event = field(default_factory=threading.Event)
    taken: bool = False                 # part of a commit (no longer droppable)
    result: list | None = None          # what the commit function returned for these rows
    error: BaseException | None = None


@dataclass
class GroupCommit(Generic[Row]):
    """``write(rows)`` returns ``commit``'s result for them once stored (in a group or alone).

    ``commit(rows)`` returns one value per row (e.g. the id each row is stored
    under); it runs on the writer thread only.
    """

    commit: Callable[[Sequence[Row]], list]
    name: str = "history-writer"
    groups: int = 0                      # commits run, for tests and metrics
    on_commit: Callable[[float, int, bool], None] | None = None   # (seconds, rows, ok) per commit
    _pending: list = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None
    _busy_since: float | None = None
    _failing_since: float | None = None
    _closed: bool = False

    def write(self, rows: Sequence[Row], timeout: float | None = None) -> list:
        ticket: _Ticket = _Ticket(list(rows))
        with self._cond:
            if self._closed:
                raise RuntimeError("the history writer is closed")
            self._pending.append(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        if not ticket.done.wait(timeout):
            with self._cond:
                if not ticket.done.is_set():
                    if not ticket.taken:
                        self._pending.remove(ticket)
                    raise CommitTimeout(timeout or 0.0, in_flight=ticket.taken)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result or []

    # -- state, for health and metrics --------------------------------------------

    def busy_for(self) -> float | None:
        """Seconds the commit running now has taken so far; None when idle."""
        since = self._busy_since
        return None if since is None else time.monotonic() - since

    def failing_for(self) -> float | None:
        """Seconds since commits started failing (none has succeeded since); None when the last one worked."""
        since = self._failing_since
        return None if since is None else time.monotonic() - since

    def queued(self) -> int:
        with self._cond:
            return len(self._pending)

    def mark_ok(self) -> None:
        """A write succeeded outside the writer (a probe): commits work again."""
        self._failing_since = None

    def mark_failed(self) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def close(self, timeout: float = 5.0) -> None:
        """Let queued rows be committed (up to ``timeout``), then stop the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- the writer thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closed:
                        self._cond.wait()
                    if not self._pending:
                        return
                    group, self._pending = self._pending, []
                    for ticket in group:
                        ticket.taken = True
                self._commit_group(group)
        finally:
            with self._cond:   # the next write starts a new writer, whatever ended this one
                self._thread = None

    def _commit_group(self, group: list[_Ticket]) -> None:
        started = time.monotonic()
        self._busy_since = started
        try:
            try:
                self._commit(group)
            except BaseException as error:  # noqa: BLE001 - retried per writer, then handed to each
                if len(group) == 1:
                    group[0].error = error
                else:
                    for ticket in group:
                        try:
                            self._commit([ticket])
                        except BaseException as own:  # noqa: BLE001
                            ticket.error = own
        finally:
            self._busy_since = None
        ok = all(t.error is None for t in group)
        if ok:
            self._failing_since = None
        else:
            self.mark_failed()
        try:
            if self.on_commit is not None:
                self.on_commit(time.monotonic() - started, sum(len(t.rows) for t in group), ok)
        finally:
            for ticket in group:
                ticket.done.set()

    def _commit(self, tickets: list[_Ticket]) -> None:
        results = self.commit([row for ticket in tickets for row in ticket.rows])
        self.groups += 1
        at = 0
        for ticket in tickets:
            ticket.result = list(results[at:at + len(ticket.rows)]) if results is not None else None
            at += len(ticket.rows)
