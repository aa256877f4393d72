"""Child processes that die with their parent (Linux ``PR_SET_PDEATHSIG``).

A child started by ``gliner2-serve`` (the training worker, a first-use
conversion) must not outlive it: a SIGTERM during start-up stops them all. The
child asks for that itself, first thing in its ``main`` (a ``preexec_fn`` would
run Python between fork and exec, which grpcio's fork handlers do not survive
while the server's threads are running): the parent passes its pid in
:data:`PARENT_ENV`, and a child whose parent is already gone by the time the
request takes effect exits at once.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PARENT_ENV = "GLINER2_DIES_WITH_PARENT"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent exits. Elsewhere nothing happens."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def child_env() -> dict[str, str]:
    """The environment for a child that should die with this process (see :func:`follow_parent`)."""
    return {**os.environ, PARENT_ENV: str(os.getpid())}


def follow_parent() -> bool:
    """In a child started with :func:`child_env`: die with the parent. False if the parent is gone already
    (the caller should exit); True otherwise, also when no parent asked for it."""
    parent = os.environ.pop(PARENT_ENV, None)
    if not parent:
        return True
    die_with_parent()
    return str(os.getppid()) == parent
