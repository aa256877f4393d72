"""Progress lines for long work: each step with its elapsed time, and a line every interval while nothing moves."""
from __future__ import annotations

import logging
import time

from gliner_server.runtime.heartbeat import Heartbeat


def test_steps_and_still_lines_carry_elapsed_time(caplog):
    logger = logging.getLogger("test.heartbeat")
    with caplog.at_level(logging.INFO, logger="test.heartbeat"):
        with Heartbeat("converting m", logger, interval_s=0.1) as progress:
            progress.step("encoder to OpenVINO IR")
            time.sleep(0.35)
            progress.step("heads")
        time.sleep(0.3)   # closed: no more lines
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("converting m: encoder to OpenVINO IR (") and lines[0].endswith("s elapsed)")
    stills = [line for line in lines if line.startswith("converting m: still at encoder to OpenVINO IR")]
    assert 2 <= len(stills) <= 4, lines
    assert lines[-1].startswith("converting m: heads (")
