"""``rehearsal judge``: LLM-as-judge evals over a with-responses experiment's pairs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from service import core
from service.cli._common import JsonOpt, emit, emit_page, out, print_json, services
from service.cli._experiments import CredentialsOpt, progress_bar
from service.cli._render import judge_preflight_table, judge_run_view, verdicts_view

app = typer.Typer(help="Judge whether divergent answers are better, equivalent or worse.", no_args_is_help=True)

ModelOpt = Annotated[str, typer.Option("--model", help="Judge model (priced in the catalog).")]
RubricOpt = Annotated[str | None, typer.Option("--rubric", help="Criteria; a default rubric when omitted.")]
HighOpt = Annotated[int, typer.Option("--high", min=0, help="Pairs from the high-similarity bucket.")]
MildOpt = Annotated[int, typer.Option("--mild", min=0, help="Pairs from the mild bucket.")]
MajorOpt = Annotated[int, typer.Option("--major", min=0, help="Pairs from the major-divergence bucket.")]
OrderOpt = Annotated[str, typer.Option("--order", help="random (one call, seeded A/B order) or both (two calls).")]
CredentialOpt = Annotated[str | None, typer.Option("--credential", help="Judge credential id (judgeCredentialId).")]


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
    json_: JsonOpt = False,
) -> None:
    """What a judge run would cost, per bucket, and a suggested spend cap."""
    result = core.preflight_judge(services(), experiment_id, _body(model, rubric, high, mild, major, order, credential))
    emit(result, json_, judge_preflight_table)


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
    json_: JsonOpt = False,
) -> None:
    """Run a judge eval (waiting for it, progress on stderr) and print the verdict breakdown."""
    body = _body(model, rubric, high, mild, major, order, credential, spend_cap)
    with progress_bar("judge calls") as report:
        result = core.create_judge_run(services(credentials=credentials), experiment_id, body, on_progress=report)
    emit(result, json_, judge_run_view)


@app.command()
def show(run_id: str, json_: JsonOpt = False) -> None:
    """One judge run: status, breakdown with 95% intervals, by bucket."""
    result = core.get_judge_run(services(), run_id)
    emit(result, json_, judge_run_view)


@app.command("list")
def list_(experiment_id: str, json_: JsonOpt = False) -> None:
    """An experiment's judge runs, newest first."""
    runs, _ = core.list_judge_runs(services(), experiment_id)
    if json_:
        print_json(runs)
        return
    for r in runs:
        out.print(
            f"{r.id}  {r.status}  {r.judge_model}  order={r.order}  rubric {r.rubric_hash[:12]}  ${r.spend_usd:.4f}"
        )


@app.command()
def results(
    run_id: str,
    verdict: Annotated[str | None, typer.Option(help="better, equivalent or worse.")] = None,
    bucket: Annotated[str | None, typer.Option(help="high, mild or major.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    cursor: Annotated[str | None, typer.Option()] = None,
    json_: JsonOpt = False,
) -> None:
    """Per-pair verdicts, worst first."""
    rows, next_cursor = core.judge_results(
        services(), run_id, verdict=verdict, bucket=bucket, limit=limit, cursor=cursor
    )
    emit_page(rows, next_cursor, json_, verdicts_view)


@app.command()
def cancel(run_id: str, json_: JsonOpt = False) -> None:
    """Stop a running judge run."""
    result = core.cancel_judge_run(services(), run_id)
    if json_:
        print_json(result)
    else:
        out.print(f"{result.id}: {result.status} ({result.status_reason})")
