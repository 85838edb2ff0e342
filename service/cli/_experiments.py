"""``rehearsal experiment``: run, list, show and promote experiments, here or (``--server``) through the REST API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.errors import ConfigError, RehearsalError
from engine.schema import JSON_MAX_DEPTH, Experiment, Preflight, RoutingConfigVersion, json_problem
from engine.similarity import Histogram
from service import core
from service.cli._common import (
    JsonOpt,
    LogsOpt,
    PricingOpt,
    ServerOpt,
    emit,
    emit_page,
    err,
    out,
    print_json,
    remote,
    services,
    validated,
)
from service.cli._render import comparison, experiment_list, histogram_view, pairs_view, preflight_table, status_line
from service.client import RestClient

app = typer.Typer(help="Run and inspect experiments.", no_args_is_help=True)


def read_spec(path: Path) -> Any:
    """A JSON or YAML spec file (the ``POST /manage/v1/experiments`` body)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read spec {path}: {exc.strerror}", param="SPEC") from None
    except UnicodeDecodeError:
        raise ConfigError(f"spec {path} is not a text file (JSON or YAML in UTF-8)", param="SPEC") from None
    try:
        body = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"spec {path} nests deeper than {JSON_MAX_DEPTH} levels", param="SPEC") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"spec {path} is not valid JSON: {exc}", param="SPEC") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "parse error"
        raise ConfigError(f"spec {path} is not valid YAML{where}: {problem}", param="SPEC") from None
    problem = json_problem(body)
    if problem is not None:
        message, param = problem
        raise ConfigError(f"spec {path}: {message}", param=param or "SPEC")
    return body


SpecArg = Annotated[Path, typer.Argument(help="JSON or YAML file: the POST /manage/v1/experiments body.")]
CredentialsOpt = Annotated[
    Path | None, typer.Option("--credentials", help="Credentials file (default $REHEARSAL_CREDENTIALS).")
]


def check_ended(run: dict[str, Any], what: str) -> None:
    """A run that ended ``failed`` fails the command (exit 1); ``completed`` and ``cancelled`` are jobs done."""
    if run.get("status") == "failed":
        raise RehearsalError(f"{what} {run.get('id')} failed: {run.get('status_reason') or 'no reason given'}")


@contextmanager
def detach_on_interrupt(hint: str) -> Iterator[None]:
    """Ctrl-C while waiting on a server stops the waiting, not the run: say how to look at it later."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"stopped waiting; the run goes on at the server: {hint}", soft_wrap=True)
        raise typer.Exit(130) from None


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
def preflight(
    spec: SpecArg,
    logs: LogsOpt = None,
    pricing: PricingOpt = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Estimate what a with-responses run of SPEC would cost, and suggest a spend cap."""
    result: Any
    if server:
        with remote(server, logs=logs, pricing=pricing) as api:
            result = api.preflight_experiment(read_spec(spec))
    else:
        result = core.preflight_experiment(services(logs, pricing), read_spec(spec), create_missing_project=True)
    emit(result, json_, validated(Preflight, preflight_table))


def run_here(spec: Path, logs: str | None, pricing: Path | None, credentials: Path | None, json_: bool) -> None:
    """Run SPEC in this process, to its end, with progress on stderr."""
    svc = services(logs, pricing, credentials)
    body = read_spec(spec)
    if isinstance(body, dict) and body.get("mode") == "with_responses":
        with progress_bar("pairs") as report:
            experiment = core.create_experiment(
                svc, body, create_missing_project=True, on_progress=report, dedicated=True
            )
    else:
        with err.status("replaying window…"):
            experiment = core.create_experiment(svc, body, create_missing_project=True, dedicated=True)
    emit(experiment, json_, comparison)


def wait_remote(api: RestClient, experiment: dict[str, Any], json_: bool) -> None:
    """Poll a submitted experiment to its end (progress bar on stderr), then print it like ``show``."""
    label = "pairs" if experiment.get("mode") == "with_responses" else "rows"
    hint = f"rehearsal experiment show {experiment['id']} --server {api.base_url}"
    with detach_on_interrupt(hint), progress_bar(label) as report:
        ended = api.wait_experiment(experiment["id"], report)
    emit(ended, json_, validated(Experiment, comparison))
    check_ended(ended, "experiment")


@app.command()
def run(
    spec: SpecArg,
    logs: LogsOpt = None,
    pricing: PricingOpt = None,
    credentials: CredentialsOpt = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run an experiment (waiting for it, progress on stderr) and print what changed; --server: submit --wait."""
    if server:
        with remote(server, logs=logs, pricing=pricing, credentials=credentials) as api:
            wait_remote(api, api.create_experiment(read_spec(spec)), json_)
    else:
        run_here(spec, logs, pricing, credentials, json_)


@app.command()
def submit(
    spec: SpecArg,
    wait: Annotated[
        bool, typer.Option("--wait", help="With --server: wait for the run to end, progress on stderr.")
    ] = False,
    logs: LogsOpt = None,
    pricing: PricingOpt = None,
    credentials: CredentialsOpt = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Submit an experiment to --server and print its id (--json: the queued object); without --server, run it here."""
    if not server:
        run_here(spec, logs, pricing, credentials, json_)
        return
    with remote(server, logs=logs, pricing=pricing, credentials=credentials) as api:
        created = api.create_experiment(read_spec(spec))
        if wait:
            wait_remote(api, created, json_)
        elif json_:
            print_json(created)
        else:
            out.print(created["id"])


@app.command()
def resume(
    experiment_id: str, logs: LogsOpt = None, credentials: CredentialsOpt = None, json_: JsonOpt = False
) -> None:
    """Finish an interrupted with-responses run; pairs already recorded are not called (or paid) again."""
    svc = services(logs, None, credentials)
    with progress_bar("pairs") as report:
        experiment = core.resume_experiment(svc, experiment_id, on_progress=report, dedicated=True)
    emit(experiment, json_, comparison)


@app.command()
def cancel(experiment_id: str, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """Stop a queued or running experiment (calls in flight finish and are recorded)."""
    experiment: Any
    if server:
        with remote(server) as api:
            experiment = api.cancel_experiment(experiment_id)
    else:
        experiment = core.cancel_experiment(services(), experiment_id)
    emit(experiment, json_, validated(Experiment, status_line))


@app.command()
def results(
    experiment_id: str,
    sort: Annotated[
        str,
        typer.Option(help="similarity_asc|similarity_desc|cost_delta_desc|cost_delta_asc|timestamp_desc|timestamp_asc"),
    ] = "timestamp_desc",
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most 500 with --server.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Cursor of the next page.")] = None,
    candidate_status: Annotated[str, typer.Option("--candidate-status", help="ok, error or any.")] = "any",
    min_similarity: Annotated[float | None, typer.Option("--min-similarity")] = None,
    max_similarity: Annotated[float | None, typer.Option("--max-similarity")] = None,
    texts: Annotated[bool, typer.Option("--texts", help="Include both answers.")] = False,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Per-pair results of a with-responses experiment."""
    query: dict[str, Any] = {
        "sort": sort,
        "limit": limit,
        "cursor": cursor,
        "candidate_status": candidate_status,
        "min_similarity": min_similarity,
        "max_similarity": max_similarity,
    }
    if server:
        with remote(server) as api:
            rows, next_cursor = api.experiment_results(experiment_id, **query)
            if texts or not json_:  # the page has no answers; each pair's detail has both
                rows = [api.experiment_pair(experiment_id, row["request_id"]) for row in rows]
    else:
        rows, next_cursor = core.experiment_results(
            services(), experiment_id, include_texts=texts or not json_, **query
        )
    emit_page(rows, next_cursor, json_, pairs_view)


@app.command()
def histogram(
    experiment_id: str,
    threshold: Annotated[float, typer.Option(min=0, max=1, help="Agreement threshold.")] = 0.85,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """The similarity histogram (10 buckets) and the agreement headline."""
    result: Any
    if server:
        with remote(server) as api:
            result = api.experiment_histogram(experiment_id, threshold=threshold)
    else:
        result = core.experiment_histogram(services(), experiment_id, threshold=threshold)
    emit(result, json_, validated(Histogram, histogram_view))


@app.command("list")
def list_(
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only this status: queued, running, completed, cancelled, failed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="Id after which to continue.")] = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List experiments, newest first."""
    items: list[Any]
    if server:
        with remote(server) as api:
            items, next_cursor = api.list_experiments(project_id=project, status=status, limit=limit, cursor=cursor)
    else:
        items, next_cursor = core.list_experiments(
            services(), project_ids=[project] if project else None, status=status, limit=limit, cursor=cursor
        )
    emit_page(items, next_cursor, json_, validated(Experiment, experiment_list))


#: Where ``show --open`` points without ``--server`` / ``REHEARSAL_SERVER``: ``rehearsal serve``'s default address.
DASHBOARD_DEFAULT = "http://127.0.0.1:8000"
OpenOpt = Annotated[
    bool,
    typer.Option(
        "--open",
        help="Print the experiment's dashboard URL (base: --server, else "
        f"{DASHBOARD_DEFAULT}) and open it in a browser when there is a display.",
    ),
]


@app.command()
def show(experiment_id: str, server: ServerOpt = None, json_: JsonOpt = False, open_: OpenOpt = False) -> None:
    """Show one experiment (``--open``: its page on the dashboard)."""
    if open_:
        # Imported here: only this option needs them. The URL is printed even when a browser opens, for SSH sessions.
        import os
        import sys
        import webbrowser
        from urllib.parse import quote

        if json_:
            raise ConfigError("--open prints the dashboard URL; it does not combine with --json", param="--open")
        url = f"{(server or DASHBOARD_DEFAULT).rstrip('/')}/experiments/{quote(experiment_id, safe='')}"
        out.print(url, soft_wrap=True)
        # Without a display, webbrowser would fall back to a text browser in this terminal: print only.
        if sys.platform in ("darwin", "win32") or any(
            os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")
        ):
            webbrowser.open(url)
        return
    experiment: Any
    if server:
        with remote(server) as api:
            experiment = api.get_experiment(experiment_id)
    else:
        experiment = core.get_experiment(services(), experiment_id)
    emit(experiment, json_, validated(Experiment, comparison))


@app.command()
def promote(experiment_id: str, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """Save the candidate config as the project's next production routing-config version."""
    printed: Any
    if server:
        with remote(server) as api:
            printed = api.promote_experiment(experiment_id)  # {"experiment", "routing_config"}
        experiment = Experiment.model_validate(printed["experiment"])
        version = RoutingConfigVersion.model_validate(printed["routing_config"])
    else:
        experiment, version = core.promote_experiment(services(), experiment_id)
        printed = {"experiment": experiment, "routing_config": version}
    if json_:
        print_json(printed)
    else:
        out.print(
            f"promoted {experiment.id}: routing config '{version.slug}' version {version.version} "
            f"({version.policy}) in project {version.project_id}"
        )
