"""``rehearsal experiment``: run, list, show and promote experiments."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.errors import ConfigError
from service import core
from service.cli._common import JsonOpt, LogsOpt, PricingOpt, emit, emit_page, err, out, print_json, services
from service.cli._render import comparison, experiment_list, histogram_view, pairs_view, preflight_table

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


SpecArg = Annotated[Path, typer.Argument(help="JSON or YAML file: the POST /manage/v1/experiments body.")]
CredentialsOpt = Annotated[
    Path | None, typer.Option("--credentials", help="Credentials file (default $REHEARSAL_CREDENTIALS).")
]


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int, float], None]]:
    """A rich progress bar on stderr; yields the callback a run reports to."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[spend]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(label, total=None, spend="")

        def report(done: int, total: int, spend: float) -> None:
            bar.update(task, completed=done, total=total, spend=f"${spend:,.4f}")

        yield report


@app.command()
def preflight(spec: SpecArg, logs: LogsOpt = None, pricing: PricingOpt = None, json_: JsonOpt = False) -> None:
    """Estimate what a with-responses run of SPEC would cost, and suggest a spend cap."""
    result = core.preflight_experiment(services(logs, pricing), read_spec(spec), create_missing_project=True)
    emit(result, json_, preflight_table)


@app.command()
def run(
    spec: SpecArg,
    logs: LogsOpt = None,
    pricing: PricingOpt = None,
    credentials: CredentialsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run an experiment locally (waiting for it), store it, and print what changed."""
    svc = services(logs, pricing, credentials)
    body = read_spec(spec)
    if isinstance(body, dict) and body.get("mode") == "with_responses":
        with progress_bar("pairs") as report:
            experiment = core.create_experiment(svc, body, create_missing_project=True, on_progress=report)
    else:
        with err.status("replaying window…"):
            experiment = core.create_experiment(svc, body, create_missing_project=True)
    emit(experiment, json_, comparison)


@app.command()
def resume(
    experiment_id: str, logs: LogsOpt = None, credentials: CredentialsOpt = None, json_: JsonOpt = False
) -> None:
    """Finish an interrupted with-responses run; pairs already recorded are not called (or paid) again."""
    svc = services(logs, None, credentials)
    with progress_bar("pairs") as report:
        experiment = core.resume_experiment(svc, experiment_id, on_progress=report)
    emit(experiment, json_, comparison)


@app.command()
def cancel(experiment_id: str, json_: JsonOpt = False) -> None:
    """Stop a queued or running experiment (calls in flight finish and are recorded)."""
    experiment = core.cancel_experiment(services(), experiment_id)
    if json_:
        print_json(experiment)
    else:
        out.print(f"{experiment.id}: {experiment.status} ({experiment.status_reason})")


@app.command()
def results(
    experiment_id: str,
    sort: Annotated[
        str,
        typer.Option(help="similarity_asc|similarity_desc|cost_delta_desc|cost_delta_asc|timestamp_desc|timestamp_asc"),
    ] = "timestamp_desc",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    cursor: Annotated[str | None, typer.Option(help="Cursor of the next page.")] = None,
    candidate_status: Annotated[str, typer.Option("--candidate-status", help="ok, error or any.")] = "any",
    min_similarity: Annotated[float | None, typer.Option("--min-similarity")] = None,
    max_similarity: Annotated[float | None, typer.Option("--max-similarity")] = None,
    texts: Annotated[bool, typer.Option("--texts", help="Include both answers.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Per-pair results of a with-responses experiment."""
    rows, next_cursor = core.experiment_results(
        services(),
        experiment_id,
        include_texts=texts or not json_,
        sort=sort,
        limit=limit,
        cursor=cursor,
        candidate_status=candidate_status,
        min_similarity=min_similarity,
        max_similarity=max_similarity,
    )
    emit_page(rows, next_cursor, json_, pairs_view)


@app.command()
def histogram(
    experiment_id: str,
    threshold: Annotated[float, typer.Option(min=0, max=1, help="Agreement threshold.")] = 0.85,
    json_: JsonOpt = False,
) -> None:
    """The similarity histogram (10 buckets) and the agreement headline."""
    result = core.experiment_histogram(services(), experiment_id, threshold=threshold)
    emit(result, json_, histogram_view)


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
    emit_page(items, next_cursor, json_, experiment_list)


@app.command()
def show(experiment_id: str, json_: JsonOpt = False) -> None:
    """Show one experiment."""
    experiment = core.get_experiment(services(), experiment_id)
    emit(experiment, json_, comparison)


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
