"""``rehearsal experiment``: run, list, show and promote experiments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from engine.errors import ConfigError
from service import core
from service.cli._common import JsonOpt, LogsOpt, PricingOpt, err, out, print_json, services
from service.cli._render import comparison, experiment_list

app = typer.Typer(help="Run and inspect experiments.", no_args_is_help=True)


def read_spec(path: Path) -> Any:
    """A JSON or YAML spec file (the ``POST /manage/v1/experiments`` body)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read spec {path}: {exc.strerror}", param="SPEC") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"spec {path} is not valid JSON: {exc}", param="SPEC") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "parse error"
        raise ConfigError(f"spec {path} is not valid YAML{where}: {problem}", param="SPEC") from None


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="JSON or YAML file: the POST /manage/v1/experiments body.")],
    logs: LogsOpt = None,
    pricing: PricingOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run an experiment locally, store it, and print baseline vs candidate."""
    svc = services(logs, pricing)
    with err.status("replaying window…"):
        experiment = core.create_experiment(svc, read_spec(spec), create_missing_project=True)
    if json_:
        print_json(experiment)
    else:
        out.print(comparison(experiment))


@app.command("list")
def list_(
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="Id after which to continue.")] = None,
    json_: JsonOpt = False,
) -> None:
    """List experiments, newest first."""
    items, next_cursor = core.list_experiments(
        services(), project_ids=[project] if project else None, limit=limit, cursor=cursor
    )
    if json_:
        print_json(items)
        return
    out.print(experiment_list(items))
    if next_cursor:
        out.print(f"more: --cursor {next_cursor}")


@app.command()
def show(experiment_id: str, json_: JsonOpt = False) -> None:
    """Show one experiment."""
    experiment = core.get_experiment(services(), experiment_id)
    if json_:
        print_json(experiment)
    else:
        out.print(comparison(experiment))


@app.command()
def promote(experiment_id: str, json_: JsonOpt = False) -> None:
    """Save the candidate config as the project's next production routing-config version."""
    experiment, version = core.promote_experiment(services(), experiment_id)
    if json_:
        print_json(experiment)
    else:
        out.print(
            f"promoted {experiment.id}: routing config '{version.slug}' version {version.version} "
            f"({version.policy}) in project {version.project_id}"
        )
