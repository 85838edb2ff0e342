"""Shared CLI plumbing: options, settings overrides, output and errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic_core import to_jsonable_python
from rich.console import Console

from engine.settings import get_settings
from service.core import Services, open_services

#: Human output goes to stdout; progress and errors to stderr.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print exactly the REST API's object (under `data`) and nothing else.")
]
LogsOpt = Annotated[
    str | None, typer.Option("--logs", help="Log-store root (default $REHEARSAL_LOGS or $REHEARSAL_HOME/logs).")
]
PricingOpt = Annotated[
    Path | None, typer.Option("--pricing", help="Pricing catalog (default $REHEARSAL_PRICING or configs/pricing.yaml).")
]


def services(logs: str | None = None, pricing: Path | None = None, credentials: Path | None = None) -> Services:
    """Services from the environment's settings with these flag overrides."""
    return open_services(get_settings(), logs=logs, pricing=pricing, credentials=credentials)


def emit(obj: Any, json_: bool, view: Callable[[Any], Any]) -> None:
    """``--json``: the object as JSON; otherwise its rendering on stdout."""
    if json_:
        print_json(obj)
    else:
        out.print(view(obj))


def emit_page(rows: list[Any], next_cursor: str | None, json_: bool, view: Callable[[Any], Any]) -> None:
    """A page of a list: JSON rows, or their rendering and how to get the next page."""
    emit(rows, json_, view)
    if next_cursor and not json_:
        out.print(f"more: --cursor {next_cursor}")


def print_json(obj: Any) -> None:
    """Write ``obj`` (models, rows, datetimes) as JSON to stdout, and nothing else."""
    sys.stdout.write(json.dumps(to_jsonable_python(obj), indent=2) + "\n")
