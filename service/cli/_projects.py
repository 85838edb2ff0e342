"""``rehearsal projects``: create, show and update projects."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.schema import LoggingMode
from service import core
from service.cli._common import JsonOpt, out, print_json, services

app = typer.Typer(help="Projects: logging mode and spend caps.", no_args_is_help=True)

ModeOpt = Annotated[LoggingMode | None, typer.Option("--logging-mode", help="full or metadata_only.")]
ExpCapOpt = Annotated[float | None, typer.Option("--experiment-cap", min=0, help="Experiment spend cap (USD).")]
JudgeCapOpt = Annotated[float | None, typer.Option("--judge-cap", min=0, help="Judge-run spend cap (USD).")]


def _show(project: core.Project, json_: bool) -> None:
    if json_:
        print_json(project)
    else:
        out.print(
            f"{project.id}: logging {project.logging_mode}, experiment cap ${project.experiment_spend_cap_usd:g}, "
            f"judge cap ${project.judge_spend_cap_usd:g}"
        )


@app.command()
def create(
    project_id: str,
    logging_mode: ModeOpt = None,
    experiment_cap: ExpCapOpt = None,
    judge_cap: JudgeCapOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Create a project (defaults: full logging, caps $50 and $20)."""
    project = core.create_project(
        services(),
        project_id,
        logging_mode=logging_mode or "full",
        experiment_spend_cap_usd=50.0 if experiment_cap is None else experiment_cap,
        judge_spend_cap_usd=20.0 if judge_cap is None else judge_cap,
    )
    _show(project, json_)


@app.command()
def show(project_id: str, json_: JsonOpt = False) -> None:
    """Show a project."""
    _show(services().store.get_project(project_id), json_)


@app.command()
def update(
    project_id: str,
    logging_mode: ModeOpt = None,
    experiment_cap: ExpCapOpt = None,
    judge_cap: JudgeCapOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Change a project's logging mode or caps."""
    project = core.update_project(
        services(),
        project_id,
        logging_mode=logging_mode,
        experiment_spend_cap_usd=experiment_cap,
        judge_spend_cap_usd=judge_cap,
    )
    _show(project, json_)


@app.command("list")
def list_(json_: JsonOpt = False) -> None:
    """List projects."""
    projects = services().store.list_projects()
    if json_:
        print_json(projects)
    else:
        for project in projects:
            _show(project, False)
