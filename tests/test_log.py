"""dynawheel.log: logging, imported when a record may be emitted (the start-up of `show`, issue 11)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from dynawheel.log import get_logger


def test_records_reach_the_standard_logger_of_the_same_name(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("dynawheel.some.module")
    with caplog.at_level(logging.DEBUG, logger="dynawheel"):
        log.debug("read %d files", 3)
        log.warning("odd: %s", "x")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("dynawheel.some.module", logging.DEBUG, "read 3 files"),
        ("dynawheel.some.module", logging.WARNING, "odd: x"),
        ("dynawheel.some.module", logging.ERROR, "failed"),
    ]
    assert caplog.records[2].exc_info is not None and caplog.records[2].exc_info[0] is ValueError
    # the record names the caller, not dynawheel/log.py
    assert {r.pathname for r in caplog.records} == {__file__}
    assert caplog.records[0].funcName == "test_records_reach_the_standard_logger_of_the_same_name"


def test_the_level_of_the_standard_logger_decides(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("dynawheel.other")
    with caplog.at_level(logging.WARNING, logger="dynawheel"):
        log.info("not shown")
        assert not log.isEnabledFor(logging.INFO) and log.isEnabledFor(logging.WARNING)
    assert caplog.records == []


_CLI = """
import sys
from dynawheel.log import configure, get_logger, WARNING

def setup():
    import logging
    logging.basicConfig(level=WARNING, format="configured: %(levelname)s: %(message)s")

configure(WARNING, setup)
log = get_logger("dynawheel.x")
log.debug("dropped")
log.info("dropped too")
print("logging" in sys.modules, log.isEnabledFor(10))
log.warning("kept %s", 1)
print("logging" in sys.modules)
"""


def test_below_the_cli_level_nothing_imports_logging_and_the_first_record_configures_it() -> None:
    proc = subprocess.run([sys.executable, "-c", _CLI], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.split() == ["False", "False", "True"]
    assert proc.stderr == "configured: WARNING: kept 1\n"


def test_a_cli_level_below_debug_imports_logging_for_every_record() -> None:
    code = _CLI.replace("configure(WARNING", "configure(10").replace("level=WARNING", "level=10")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.split() == ["True", "True", "True"]
    assert proc.stderr.splitlines() == ["configured: DEBUG: dropped", "configured: INFO: dropped too",
                                        "configured: WARNING: kept 1"]
