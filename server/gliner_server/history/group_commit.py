"""Group commit: concurrent writers share one transaction, each still durable on return.

Every inference is committed before its answer is sent. Committing costs a
synchronous flush (``fsync`` of SQLite's WAL, or PostgreSQL's WAL flush), so
under load one commit per request serialises the requests on the disk. Here the
first writer to arrive commits everything queued so far in one transaction
while later writers queue behind it; when it is done, one of those takes the
next group. A lone writer commits alone, exactly as before.

If a shared commit fails, each writer's rows are retried in their own
transaction, so one bad row never fails another request.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

Row = TypeVar("Row")


@dataclass(eq=False)
class _Ticket(Generic[Row]):
    rows: Sequence[Row]
    done: bool = False
    error: BaseException | None = None


@dataclass
class GroupCommit(Generic[Row]):
    """``write(rows)`` returns once ``commit`` has stored them (in a group or alone)."""

    commit: Callable[[Sequence[Row]], None]
    groups: int = 0                  # commits run, for tests and metrics
    _pending: list = field(default_factory=list)
    _committing: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def write(self, rows: Sequence[Row]) -> None:
        ticket = _Ticket(list(rows))
        with self._cond:
            self._pending.append(ticket)
            while not ticket.done and self._committing:
                self._cond.wait()
            if ticket.done:
                if ticket.error is not None:
                    raise ticket.error
                return
            self._committing = True        # this writer leads the next group
            group, self._pending = self._pending, []
        try:
            self._commit_group(group)
        finally:
            with self._cond:
                self._committing = False
                self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error

    def _commit_group(self, group: list[_Ticket]) -> None:
        try:
            self.commit([row for ticket in group for row in ticket.rows])
            self.groups += 1
        except BaseException as error:  # noqa: BLE001 - retried per writer, then handed to each
            if len(group) == 1:
                group[0].error = error
            else:
                for ticket in group:
                    try:
                        self.commit(ticket.rows)
                        self.groups += 1
                    except BaseException as own:  # noqa: BLE001
                        ticket.error = own
        for ticket in group:
            ticket.done = True
