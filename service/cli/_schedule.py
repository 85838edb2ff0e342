"""``rehearsal schedule``, ``rehearsal signals`` and ``rehearsal webhooks``: here or (``--server``) over REST.

Locally, schedules are Prefect deployments on the server ``PREFECT_API_URL``
names (the one ``rehearsal serve`` runs); their fires run on that runner.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic_core import to_jsonable_python
from rich.table import Table

from engine.webhooks import DEFAULT_TOLERANCE_S, verify
from service.cli._common import JsonOpt, ServerOpt, out, print_json, remote, services
from service.cli._experiments import read_spec
from service.local_api import LocalApi

schedule_app = typer.Typer(help="Experiments on a cron, with verdicts (Prefect deployments).", no_args_is_help=True)
signals_app = typer.Typer(help="Alerts raised by failing scheduled runs.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Signed event deliveries to your endpoints.", no_args_is_help=True)

ProjectOpt = Annotated[str | None, typer.Option("--project", help="Only this project.")]


def _api(server: str | None) -> Any:
    """The REST API at ``server``, or the same calls made here (the local operator sees every project)."""
    return remote(server) if server else LocalApi(services())


def _show(obj: Any, json_: bool, columns: list[str], title: str | None = None) -> None:
    """JSON, or a table of ``columns`` (one row per object)."""
    data = to_jsonable_python(obj)
    if json_:
        print_json(data)
        return
    rows = data if isinstance(data, list) else [data]
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    out.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, dict) and "verdict" in value:
        return f"{value['verdict']}" + (f" ({value['severity']})" if value.get("severity") else "")
    return "" if value is None else str(value)


SCHEDULE_COLUMNS = ["id", "name", "status", "cron_expression", "window_hours", "mode", "next_run_at", "last_verdict"]


@schedule_app.command("create")
def schedule_create(
    spec: Annotated[Path, typer.Argument(help="JSON or YAML: the POST /manage/v1/scheduled_experiments body.")],
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Create a scheduled experiment (a Prefect deployment with its cron); it fires once at once."""
    with _api(server) as api:
        created = to_jsonable_python(api.create_schedule(read_spec(spec)))
    _show(created, json_, SCHEDULE_COLUMNS)
    if not json_:
        cost = created.get("monthly_cost_projection_usd")
        projection = f"; at most ${cost:,.2f} a month ({created['runs_per_month']} runs)" if cost is not None else ""
        out.print(f"first run: {created['last_experiment_id']}{projection}")


@schedule_app.command("list")
def schedule_list(
    project: ProjectOpt = None,
    status: Annotated[str | None, typer.Option("--status", help="active or paused.")] = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List scheduled experiments (cron and pause state as Prefect has them)."""
    with _api(server) as api:
        _show(api.list_schedules(project_id=project, status=status), json_, SCHEDULE_COLUMNS)


@schedule_app.command("show")
def schedule_show(schedule_id: str, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """Show a schedule and its recent runs with their verdicts."""
    with _api(server) as api:
        schedule = api.get_schedule(schedule_id)
        runs = [] if json_ else api.schedule_runs(schedule_id)
    _show(schedule, json_, SCHEDULE_COLUMNS)
    if not json_:
        _show(runs, False, ["id", "scheduled_for", "status", "verdict", "status_reason"], title="runs")


@schedule_app.command("update")
def schedule_update(
    schedule_id: str,
    spec: Annotated[Path, typer.Argument(help="JSON or YAML: the fields to change (PATCH body).")],
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Change cron, window, success criteria, rubric, … (only the fields in SPEC)."""
    with _api(server) as api:
        _show(api.update_schedule(schedule_id, read_spec(spec)), json_, SCHEDULE_COLUMNS)


@schedule_app.command("delete")
def schedule_delete(schedule_id: str, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """Delete a schedule and its deployment (its past runs stay)."""
    with _api(server) as api:
        _show(api.delete_schedule(schedule_id), json_, ["id", "name"], title="deleted")


def _action(action: str, help_text: str) -> None:
    def command(schedule_id: str, server: ServerOpt = None, json_: JsonOpt = False) -> None:
        with _api(server) as api:
            answer = api.schedule_action(schedule_id, action)
        columns = ["id", "status", "window_start", "window_end"] if action == "run_now" else SCHEDULE_COLUMNS
        _show(answer, json_, columns)

    command.__doc__ = help_text
    schedule_app.command(action.replace("_", "-"))(command)


_action("pause", "Pause a schedule: no fires until it is resumed (history is kept).")
_action("resume", "Resume a paused schedule.")
_action("run_now", "Fire a schedule once now, without touching its cron.")


SIGNAL_COLUMNS = ["key", "state", "severity", "dismissed", "snoozed_until", "occurrences", "message"]


@signals_app.command("list")
def signals_list(
    project: ProjectOpt = None,
    state: Annotated[str, typer.Option("--state", help="open, resolved or all.")] = "open",
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List signals."""
    with _api(server) as api:
        _show(api.list_signals(project_id=project, state=state), json_, SIGNAL_COLUMNS)


@signals_app.command("dismiss")
def signals_dismiss(key: str, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """Dismiss a signal until a passing run resolves it."""
    with _api(server) as api:
        _show(api.signal_action(key, "dismiss"), json_, SIGNAL_COLUMNS)


@signals_app.command("snooze")
def signals_snooze(
    key: str,
    until: Annotated[str, typer.Option("--until", help="ISO time, e.g. 2026-12-01T00:00:00Z.")],
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Snooze a signal until a time."""
    with _api(server) as api:
        _show(api.signal_action(key, "snooze", {"until": until}), json_, SIGNAL_COLUMNS)


WEBHOOK_COLUMNS = ["id", "project_id", "url", "events"]


@webhooks_app.command("create")
def webhooks_create(
    project: Annotated[str, typer.Option("--project", help="The project whose events to send.")],
    url: Annotated[str, typer.Option("--url", help="The receiver's URL.")],
    event: Annotated[
        list[str] | None, typer.Option("--event", help="An event type (repeatable; default: all).")
    ] = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Add an endpoint; prints its signing secret once."""
    body: dict[str, Any] = {"projectId": project, "url": url}
    if event:
        body["events"] = event
    with _api(server) as api:
        created = to_jsonable_python(api.create_webhook(body))
    _show(created, json_, WEBHOOK_COLUMNS)
    if not json_:
        out.print(f"signing secret (shown once): {created['secret']}")


@webhooks_app.command("list")
def webhooks_list(project: ProjectOpt = None, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """List endpoints (never their secrets)."""
    with _api(server) as api:
        _show(api.list_webhooks(project_id=project), json_, WEBHOOK_COLUMNS)


@webhooks_app.command("delete")
def webhooks_delete(webhook_id: str, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """Remove an endpoint."""
    with _api(server) as api:
        _show(api.delete_webhook(webhook_id), json_, WEBHOOK_COLUMNS, title="deleted")


@webhooks_app.command("deliveries")
def webhooks_deliveries(webhook_id: str, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """An endpoint's delivery log."""
    with _api(server) as api:
        rows = api.list_deliveries(webhook_id)
    _show(rows, json_, ["id", "type", "status", "attempts", "last_status_code", "next_attempt_at", "created_at"])


@webhooks_app.command("replay")
def webhooks_replay(webhook_id: str, delivery_id: str, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """Send a past delivery's event again, now."""
    with _api(server) as api:
        _show(api.replay_delivery(webhook_id, delivery_id), json_, ["id", "type", "status", "attempts"])


@webhooks_app.command("verify")
def webhooks_verify(
    secret: Annotated[str, typer.Option("--secret", envvar="REHEARSAL_WEBHOOK_SECRET", help="The endpoint's secret.")],
    timestamp: Annotated[str, typer.Option("--timestamp", help="The X-Rehearsal-Timestamp header.")],
    signature: Annotated[str, typer.Option("--signature", help="The X-Rehearsal-Signature header.")],
    body: Annotated[Path | None, typer.Option("--body", help="The raw body (default: stdin).")] = None,
    tolerance: Annotated[int, typer.Option("--tolerance", help="Oldest timestamp accepted, in seconds.")] = (
        DEFAULT_TOLERANCE_S
    ),
) -> None:
    """Check a delivery's signature as a receiver should (exit 0: valid; 1: not)."""
    raw = body.read_bytes() if body else sys.stdin.buffer.read()
    if verify(secret, raw, timestamp, signature, tolerance_s=tolerance):
        out.print("valid signature")
        return
    out.print("INVALID: the signature does not match this body and secret, or the timestamp is too old")
    raise typer.Exit(1)
