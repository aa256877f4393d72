"""Loaded by Python at start-up when this directory is on PYTHONPATH (tests/test_lean_serving.py).

With GLINER2_FORBIDDEN_IMPORTS set (comma-separated top-level modules), any
import of one of them fails with ImportError and is written, with the importing
stack, to the file named by GLINER2_IMPORT_LOG: code that catches the
ImportError and carries on is still caught by the test reading that file.
"""
import os
import sys
import traceback

_FORBIDDEN = {name for name in os.environ.get("GLINER2_FORBIDDEN_IMPORTS", "").split(",") if name}
_LOG = os.environ.get("GLINER2_IMPORT_LOG")


class _Guard:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in _FORBIDDEN:
            return None
        if _LOG:
            with open(_LOG, "a") as log:
                log.write(f"pid {os.getpid()} imported {name}:\n{''.join(traceback.format_stack(limit=12))}\n")
        raise ImportError(f"{name} is forbidden in this process (import guard)")


if _FORBIDDEN:
    sys.meta_path.insert(0, _Guard())
