"""dynawheel's loggers: the standard library's :mod:`logging`, imported when a record may be emitted.

A module logs through ``log = get_logger(__name__)``: every call goes to ``logging.getLogger(__name__)``
(same names, levels, records, handlers; a caller's ``caplog`` or ``logging.basicConfig`` sees them as
before).  Performance (issue 11): importing logging costs ~7 ms (it brings traceback, linecache,
tokenize, string, weakref), a tenth of `dynawheel show` on a small wheel, which logs nothing at its
default level.  So the command line declares its level and its set-up with :func:`configure`; while
nothing has imported logging, a record below that level is dropped here (logging would drop it too),
and the first record at or above it imports logging and runs the set-up first.  A library caller, who
configures nothing here, gets every call delegated.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import types

# logging's numeric levels (fixed by its documentation)
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

_setup: Callable[[], None] | None = None  # the command line's set-up, not yet run
_level: int | None = None  # its level, while logging is not imported


def configure(level: int, setup: Callable[[], None]) -> None:
    """Run `setup` (it configures logging for `level`) now if logging is imported, else before the first
    record at `level` or above; records below `level` are dropped until logging is imported."""
    global _setup, _level
    if "logging" in sys.modules:
        _setup, _level = None, None
        setup()
    else:
        _setup, _level = setup, level


def logging_module() -> types.ModuleType:
    """:mod:`logging`, configured by the pending set-up of :func:`configure`, if any."""
    global _setup, _level
    import logging

    setup, _setup, _level = _setup, None, None
    if setup is not None:
        setup()
    return logging


class Logger:
    """``logging.getLogger(name)``, reached on each call (see the module's documentation)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _emit(self, level: int, msg: object, args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
        if _level is not None and level < _level and "logging" not in sys.modules:
            return
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 2  # the record names our caller, not this module
        logging_module().getLogger(self.name).log(level, msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        if _level is not None and level < _level and "logging" not in sys.modules:
            return False
        enabled: bool = logging_module().getLogger(self.name).isEnabledFor(level)
        return enabled

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit(DEBUG, msg, args, kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit(INFO, msg, args, kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit(WARNING, msg, args, kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit(ERROR, msg, args, kwargs)

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self._emit(ERROR, msg, args, kwargs)


def get_logger(name: str) -> Logger:
    return Logger(name)
