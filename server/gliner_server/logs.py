"""The process's log lines: plain text for a terminal (the default), or one JSON object per line.

``--log-format json`` (or ``GLINER2_LOG_FORMAT=json``) makes every line the
service writes on standard output a JSON object, for a log shipper:

* every log record: ``time`` (UTC, ISO 8601 with milliseconds), ``level``,
  ``logger``, ``message``, ``replica`` when the process is one of several, and
  ``error`` (the traceback) when there is one;
* the per-request line of ``gliner2.access`` (``grpc_api/calls.py``) adds its
  fields at the top level: ``request_id``, ``route``, ``method``, ``model``,
  ``client``, ``status``, ``http_status``, ``latency_ms``, ``queue_ms``,
  ``model_ms``, ``texts``, ``tokens``. Never a text, a key or a body;
* the ``SERVING`` announcement (:func:`announce`);
* Envoy's access log (``envoy/config.py``), with ``logger: "envoy.access"``.

Fields a record carries under ``extra={"request": {...}}`` are the only ones
added, so a message cannot smuggle a field in.
"""
from __future__ import annotations

import json
import logging
import sys
import time

LOG_FORMATS = ("plain", "json")
REQUEST_FIELDS = "request"   # the LogRecord attribute whose dict is added to a JSON line


def utc_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


class JsonLines(logging.Formatter):
    """A log record as one line of JSON."""

    def __init__(self, replica: str | None = None):
        super().__init__()
        self.replica = replica

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": utc_time(record.created), "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        if self.replica is not None:
            line["replica"] = self.replica
        fields = getattr(record, REQUEST_FIELDS, None)
        if isinstance(fields, dict):
            line.update({key: value for key, value in fields.items() if key not in line})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["error"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


_format = "plain"
_replica: str | None = None


def configure(level: str, log_format: str = "plain", replica: str | None = None) -> None:
    """The root logger's handler on standard error, in ``log_format``; call once, first thing."""
    global _format, _replica
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
    _format, _replica = log_format, replica
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonLines(replica))
    else:
        tag = f" replica-{replica}" if replica is not None else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s{tag} %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Python's warnings would be printed as bare text: in JSON they are log records (logger "py.warnings").
    logging.captureWarnings(log_format == "json")


def fatal(message: str) -> None:
    """Why the command stops, on standard error (a JSON line with level ERROR in JSON mode)."""
    _say(message, "ERROR", sys.stderr)


def announce(message: str) -> None:
    """A line for whoever started the command (``gliner2-serve: SERVING ...``) on standard output."""
    _say(message, "INFO", sys.stdout)


def _say(message: str, level: str, stream) -> None:
    if _format == "json":
        line = {"time": utc_time(time.time()), "level": level, "logger": "gliner2-serve", "message": message}
        if _replica is not None:
            line["replica"] = _replica
        message = json.dumps(line, ensure_ascii=False)
    print(message, file=stream, flush=True)
