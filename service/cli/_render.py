"""Rich renderings of engine objects for the terminal."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.schema import Experiment, Summary


def _pct(value: float | None) -> Text:
    if value is None:
        return Text("n/a", style="dim")
    style = "green" if value < 0 else "red" if value > 0 else ""
    return Text(f"{value:+.1f}%", style=style)


def _usd(value: float) -> str:
    return f"${value:,.4f}" if abs(value) < 100 else f"${value:,.2f}"


def comparison(experiment: Experiment) -> Group:
    """Baseline vs candidate table, route mix and notes of a completed experiment."""
    base, cand, d = experiment.baseline_summary, experiment.candidate_summary, experiment.deltas
    header = Text.assemble(
        (experiment.name, "bold"),
        f"  {experiment.id}  ",
        (experiment.status, "green" if experiment.status == "completed" else "yellow"),
        f"\n{experiment.project_id}: {experiment.window_start:%Y-%m-%d %H:%M} → "
        f"{experiment.window_end:%Y-%m-%d %H:%M} UTC"
        f"  candidate: {experiment.candidate_policy}",
    )
    parts: list[Table | Text] = [header]
    if experiment.hypothesis:
        parts.append(Text(f"Hypothesis: {experiment.hypothesis}", style="italic"))
    if experiment.status_reason:
        parts.append(Text(experiment.status_reason, style="yellow"))
    if base is None or cand is None or d is None:
        return Group(*parts)
    table = Table(title="Baseline vs candidate", title_justify="left")
    table.add_column("metric")
    table.add_column("baseline", justify="right")
    table.add_column("candidate", justify="right")
    table.add_column("change", justify="right")
    table.add_row("requests", f"{base.request_count:,}", f"{cand.request_count:,}", "")
    table.add_row(
        "cost",
        _usd(base.cost_usd),
        _usd(cand.cost_usd),
        Text.assemble(_usd(d.cost_delta_usd), " ", _pct(d.cost_delta_pct)),
    )
    table.add_row("cost / request", _usd(base.cost_per_request_usd), _usd(cand.cost_per_request_usd), "")
    table.add_row(
        "latency p50", f"{base.latency_p50_ms:,.0f} ms", f"{cand.latency_p50_ms:,.0f} ms", _pct(d.latency_p50_delta_pct)
    )
    table.add_row(
        "latency p95", f"{base.latency_p95_ms:,.0f} ms", f"{cand.latency_p95_ms:,.0f} ms", _pct(d.latency_p95_delta_pct)
    )
    table.add_row("error rate", f"{base.error_rate:.2%}", f"{cand.error_rate:.2%}", _pct(d.error_rate_delta_pct))
    parts += [table, routes(base, cand)]
    if experiment.notes:
        parts.append(Text("Notes:\n" + "\n".join(f"  • {n}" for n in experiment.notes), style="dim"))
    return Group(*parts)


def routes(base: Summary, cand: Summary) -> Table:
    """Route distribution of both sides."""
    table = Table(title="Route mix", title_justify="left")
    table.add_column("model:provider")
    table.add_column("baseline", justify="right")
    table.add_column("candidate", justify="right")
    keys = sorted(
        set(base.route_distribution) | set(cand.route_distribution),
        key=lambda k: -(base.route_distribution.get(k, 0) + cand.route_distribution.get(k, 0)),
    )
    for key in keys:
        table.add_row(key, f"{base.route_distribution.get(key, 0):.1%}", f"{cand.route_distribution.get(key, 0):.1%}")
    return table


def experiment_list(items: list[Experiment]) -> Table:
    """One line per experiment."""
    table = Table()
    for col in ("id", "name", "project", "mode", "status", "candidate", "cost Δ"):
        table.add_column(col)
    for e in items:
        delta = "" if e.deltas is None else _pct(e.deltas.cost_delta_pct)
        table.add_row(e.id, e.name, e.project_id, e.mode, e.status, e.candidate_policy, delta)
    return table
