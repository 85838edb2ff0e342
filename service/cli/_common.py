"""Shared CLI plumbing: options, settings overrides, output and errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
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


def services(logs: str | None = None, pricing: Path | None = None) -> Services:
    """Services from the environment's settings with these flag overrides."""
    return open_services(get_settings(), logs=logs, pricing=pricing)


def to_jsonable(obj: Any) -> Any:
    """Pydantic models (and lists of them) as plain JSON values."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, list):
        return [to_jsonable(o) for o in obj]
    return obj


def print_json(obj: Any) -> None:
    """Write ``obj`` as JSON to stdout (and nothing else)."""
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2) + "\n")
