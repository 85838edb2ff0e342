"""``rehearsal judge``: LLM-as-judge evals over a with-responses experiment's pairs, here or through ``--server``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from engine.errors import ConfigError
from engine.schema import JudgePreflight, JudgeRun
from service import core
from service.cli._common import JsonOpt, ServerOpt, emit, emit_page, out, print_json, remote, services, validated
from service.cli._experiments import CredentialsOpt, check_ended, detach_on_interrupt, progress_bar
from service.cli._render import judge_preflight_table, judge_run_view, status_line, verdicts_view

app = typer.Typer(help="Judge whether divergent answers are better, equivalent or worse.", no_args_is_help=True)

ModelOpt = Annotated[str, typer.Option("--model", help="Judge model (priced in the catalog).")]
RubricOpt = Annotated[str | None, typer.Option("--rubric", help="Criteria; a default rubric when omitted.")]
HighOpt = Annotated[int, typer.Option("--high", min=0, help="Pairs from the high-similarity bucket.")]
MildOpt = Annotated[int, typer.Option("--mild", min=0, help="Pairs from the mild bucket.")]
MajorOpt = Annotated[int, typer.Option("--major", min=0, help="Pairs from the major-divergence bucket.")]
OrderOpt = Annotated[str, typer.Option("--order", help="random (one call, seeded A/B order) or both (two calls).")]
CredentialOpt = Annotated[str | None, typer.Option("--credential", help="Judge credential id (judgeCredentialId).")]
ExperimentOpt = Annotated[
    str | None,
    typer.Option("--experiment", help="The run's experiment id (required with --server; checked when given)."),
]


def _body(
    model: str,
    rubric: str | None,
    high: int,
    mild: int,
    major: int,
    order: str,
    credential: str | None,
    spend_cap: float | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "judgeModel": model,
        "stratification": {"high": high, "mild": mild, "major": major},
        "order": order,
    }
    if rubric is not None:
        body["rubric"] = rubric
    if credential is not None:
        body["judgeCredentialId"] = credential
    if spend_cap is not None:
        body["spendCapUsd"] = spend_cap
    return body


def _experiment_of(run_id: str, experiment_id: str | None, server: str | None) -> str | None:
    """The ``--experiment`` a judge run is addressed under; required with a server, checked here when given."""
    if server and not experiment_id:
        raise ConfigError(
            "--experiment is required with --server: judge runs live under their experiment's path",
            param="--experiment",
        )
    if not server and experiment_id:
        core.get_judge_run(services(), run_id, experiment_id=experiment_id)
    return experiment_id


@app.command()
def preflight(
    experiment_id: str,
    model: ModelOpt = "gpt-4o",
    rubric: RubricOpt = None,
    high: HighOpt = 100,
    mild: MildOpt = 100,
    major: MajorOpt = 100,
    order: OrderOpt = "random",
    credential: CredentialOpt = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """What a judge run would cost, per bucket, and a suggested spend cap."""
    body = _body(model, rubric, high, mild, major, order, credential)
    result: Any
    if server:
        with remote(server) as api:
            result = api.preflight_judge(experiment_id, body)
    else:
        result = core.preflight_judge(services(), experiment_id, body)
    emit(result, json_, validated(JudgePreflight, judge_preflight_table))


@app.command()
def run(
    experiment_id: str,
    spend_cap: Annotated[float, typer.Option("--spend-cap", help="spendCapUsd of this judge run.")],
    model: ModelOpt = "gpt-4o",
    rubric: RubricOpt = None,
    high: HighOpt = 100,
    mild: MildOpt = 100,
    major: MajorOpt = 100,
    order: OrderOpt = "random",
    credential: CredentialOpt = None,
    credentials: CredentialsOpt = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run a judge eval (waiting for it, progress on stderr) and print the verdict breakdown."""
    body = _body(model, rubric, high, mild, major, order, credential, spend_cap)
    if not server:
        with progress_bar("judge calls") as report:
            result = core.create_judge_run(
                services(credentials=credentials), experiment_id, body, on_progress=report, dedicated=True
            )
        emit(result, json_, judge_run_view)
        return
    with remote(server, credentials=credentials) as api:
        created = api.create_judge_run(experiment_id, body)
        hint = f"rehearsal judge show {created['id']} --experiment {experiment_id} --server {api.base_url}"
        with detach_on_interrupt(hint), progress_bar("judge calls") as report:
            ended = api.wait_judge_run(experiment_id, created["id"], report)
    emit(ended, json_, validated(JudgeRun, judge_run_view))
    check_ended(ended, "judge run")


@app.command()
def show(run_id: str, experiment: ExperimentOpt = None, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """One judge run: status, breakdown with 95% intervals, by bucket."""
    experiment_id = _experiment_of(run_id, experiment, server)
    result: Any
    if server and experiment_id:
        with remote(server) as api:
            result = api.get_judge_run(experiment_id, run_id)
    else:
        result = core.get_judge_run(services(), run_id)
    emit(result, json_, validated(JudgeRun, judge_run_view))


@app.command("list")
def list_(experiment_id: str, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """An experiment's judge runs, newest first."""
    runs: list[Any]
    if server:
        with remote(server) as api:
            runs, _ = api.list_judge_runs(experiment_id)
    else:
        runs, _ = core.list_judge_runs(services(), experiment_id)
    if json_:
        print_json(runs)
        return
    for r in map(JudgeRun.model_validate, runs):
        out.print(
            f"{r.id}  {r.status}  {r.judge_model}  order={r.order}  rubric {r.rubric_hash[:12]}  ${r.spend_usd:.4f}"
        )


@app.command()
def results(
    run_id: str,
    verdict: Annotated[str | None, typer.Option(help="better, equivalent or worse.")] = None,
    bucket: Annotated[str | None, typer.Option(help="high, mild or major.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most 500 with --server.")] = 20,
    cursor: Annotated[str | None, typer.Option()] = None,
    experiment: ExperimentOpt = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Per-pair verdicts, worst first."""
    experiment_id = _experiment_of(run_id, experiment, server)
    query: dict[str, Any] = {"verdict": verdict, "bucket": bucket, "limit": limit, "cursor": cursor}
    if server and experiment_id:
        with remote(server) as api:
            rows, next_cursor = api.judge_results(experiment_id, run_id, **query)
    else:
        rows, next_cursor = core.judge_results(services(), run_id, **query)
    emit_page(rows, next_cursor, json_, verdicts_view)


@app.command()
def cancel(run_id: str, experiment: ExperimentOpt = None, server: ServerOpt = None, json_: JsonOpt = False) -> None:
    """Stop a running judge run."""
    experiment_id = _experiment_of(run_id, experiment, server)
    result: Any
    if server and experiment_id:
        with remote(server) as api:
            result = api.cancel_judge_run(experiment_id, run_id)
    else:
        result = core.cancel_judge_run(services(), run_id)
    emit(result, json_, validated(JudgeRun, status_line))
