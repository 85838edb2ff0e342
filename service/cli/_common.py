"""Shared CLI plumbing: options, settings overrides, output and errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from rich.console import Console

from engine.errors import ConfigError
from engine.settings import get_settings
from service.client import KEY_ENV, RestClient
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


ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="REHEARSAL_SERVER",
        show_envvar=True,
        help=f"Use the rehearsal REST API at this URL instead of running here (key from ${KEY_ENV}).",
    ),
]


def remote(server: str, **local_only: object) -> RestClient:
    """A client of ``server``; flags that only apply to local runs (``local_only``, set) are refused."""
    for flag, value in local_only.items():
        if value is not None:
            name = "--" + flag.replace("_", "-")
            raise ConfigError(f"{name} applies to local runs only; the server uses its own settings", param=name)
    return RestClient(server)


def validated(model: type[BaseModel], view: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``view`` for objects that may be REST answers (dicts): validated back into ``model`` first (lists: each)."""

    def render(obj: Any) -> Any:
        if isinstance(obj, list):
            return view([model.model_validate(item) for item in obj])
        return view(model.model_validate(obj))

    return render
