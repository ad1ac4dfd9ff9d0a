"""CLI: repair subcommands (placeholder until the module lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:  # argparse._SubParsersAction
    _ = sub, argparse
