"""Rich renderings of engine objects for the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.judge import request_text
from engine.schema import (
    EstimateError,
    Experiment,
    Interval,
    JudgePreflight,
    JudgeRun,
    LoggedRequest,
    Preflight,
    Summary,
)
from engine.similarity import Histogram


def _pct(value: float | None, interval: Interval | None = None) -> Text:
    if value is None:
        return Text("n/a", style="dim")
    style = "green" if value < 0 else "red" if value > 0 else ""
    text = Text(f"{value:+.1f}%", style=style)
    if interval is not None:
        text.append(f" ({interval_text(interval)})", style="dim")
    return text


def interval_text(interval: Interval, fmt: str = "{:+.1f}%") -> str:
    """A 90% interval as ``-48% … -35%``, with real minus signs."""
    return " … ".join(fmt.format(v).replace("-", "−") for v in (interval.low, interval.high))


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
    if experiment.pricing is not None:
        parts.append(Text(pricing_line(experiment), style="dim"))
    if experiment.hypothesis:
        parts.append(Text(f"Hypothesis: {experiment.hypothesis}", style="italic"))
    if experiment.status_reason:
        parts.append(Text(experiment.status_reason, style="yellow"))
    if experiment.mode == "with_responses":
        cap = f" of ${experiment.spend_cap_usd:g} cap" if experiment.spend_cap_usd else ""
        parts.append(
            Text(
                f"Pairs: {experiment.progress.done:,}/{experiment.progress.total:,}   "
                f"spend: ${experiment.spend_usd:,.4f}{cap}"
            )
        )
        if experiment.similarity_summary is not None:
            parts.append(Text(experiment.similarity_summary.headline, style="bold cyan"))
        if experiment.estimate_error is not None:
            parts.append(Text(estimate_error_line(experiment.estimate_error)))
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
        Text.assemble(_usd(d.cost_delta_usd), " ", _pct(d.cost_delta_pct, d.cost_delta_pct_interval)),
    )
    table.add_row("cost / request", _usd(base.cost_per_request_usd), _usd(cand.cost_per_request_usd), "")
    table.add_row(
        "latency p50",
        f"{base.latency_p50_ms:,.0f} ms",
        f"{cand.latency_p50_ms:,.0f} ms",
        _pct(d.latency_p50_delta_pct, d.latency_p50_delta_pct_interval),
    )
    table.add_row(
        "latency p95",
        f"{base.latency_p95_ms:,.0f} ms",
        f"{cand.latency_p95_ms:,.0f} ms",
        _pct(d.latency_p95_delta_pct, d.latency_p95_delta_pct_interval),
    )
    table.add_row(
        "error rate",
        f"{base.error_rate:.2%}",
        f"{cand.error_rate:.2%}",
        _pct(d.error_rate_delta_pct, d.error_rate_delta_pct_interval),
    )
    parts.append(table)
    if d.cost_delta_pct_interval is not None:
        parts.append(Text("Changes in brackets: 90% intervals (README: how the intervals are made).", style="dim"))
    parts.append(routes(base, cand))
    if experiment.notes:
        parts.append(Text("Notes:\n" + "\n".join(f"  • {n}" for n in experiment.notes), style="dim"))
    return Group(*parts)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def estimate_error_line(error: EstimateError) -> str:
    """How good the run's estimate was: actual ÷ estimated spend, overall and per call."""
    return (
        f"Estimate error (actual ÷ estimated): {_ratio(error.overall)} overall; per call p50 "
        f"{_ratio(error.per_call_p50)}, p90 {_ratio(error.per_call_p90)} of its reservation "
        f"({error.calls:,} answered calls)"
    )


def pricing_line(experiment: Experiment) -> str:
    """Which list prices the experiment used: source, version, date, override file."""
    p = experiment.pricing
    if p is None:
        return ""
    when = "each request's own date (asOf row)" if p.price_date is None else f"{p.price_date:%Y-%m-%d} (asOf {p.as_of})"
    overrides = f", overrides {p.overrides}" if p.overrides else ""
    return f"List prices: {p.source} {p.version} in force on {when}{overrides}"


def status_line(run: Experiment | JudgeRun) -> str:
    """``id: status (reason)``, what cancelling a run prints."""
    return f"{run.id}: {run.status} ({run.status_reason})"


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


def preflight_table(result: Preflight) -> Table:
    """The estimate and caps of a with-responses preflight."""
    e = result.estimate
    table = Table(title="Preflight (with responses)", title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_row("replayable rows in window", f"{e.row_count_in_window:,}")
    table.add_row("effective sample", f"{e.effective_sample_size:,}")
    table.add_row("per-call estimate", f"${e.per_call_estimate_usd:.7f}")
    table.add_row("embedding cost", f"${e.embedding_cost_usd:.7f}")
    table.add_row("estimated cost", f"${e.estimated_cost_usd:.4f}")
    table.add_row("project spend cap", f"${result.spend_cap_usd:g}")
    table.add_row("suggested spendCapUsd", f"${result.suggested_spend_cap_usd:.4f}")
    table.add_row("requires confirmation", "yes" if result.requires_confirmation else "no")
    table.add_row("auto-cancel ratio", f"{result.auto_cancel_ratio:g}x")
    for note in e.notes:
        table.add_row("note", Text(note, style="dim"))
    return table


def histogram_view(result: Histogram, width: int = 40) -> Group:
    """Bars per similarity bucket and the headline."""
    peak = max((b.count for b in result.buckets), default=0) or 1
    table = Table(show_header=True, box=None)
    table.add_column("similarity")
    table.add_column("pairs", justify="right")
    table.add_column("")
    for b in result.buckets:
        style = "green" if b.lower >= result.threshold else "yellow" if b.lower >= 0.6 else "red"
        table.add_row(
            f"[{b.lower:.1f}, {b.upper:.1f}{']' if b.upper >= 1 else ')'}",
            f"{b.count:,}",
            Text("█" * round(b.count / peak * width), style=style),
        )
    mean = "n/a" if result.mean_similarity is None else f"{result.mean_similarity:.3f}"
    footer = Text(f"mean {mean}; {result.scored_count:,} scored, {result.unscored_count:,} unscored", style="dim")
    return Group(Text(result.headline, style="bold cyan"), table, footer)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def pairs_view(rows: list[dict[str, Any]]) -> Group:
    """Pairs side by side: the baseline answer and the candidate's."""
    parts: list[Table | Text] = []
    for row in rows:
        sim = "unscored" if row.get("similarity") is None else f"{row['similarity']:.3f}"
        failed = row.get("candidate_status") not in (None, "ok")
        parts.append(
            Text.assemble(
                (f"{row['request_id']}", "bold"),
                f"  similarity {sim}  {row['baseline_model']} → {row['candidate_model']} ({row['candidate_status']}"
                + (f": {row['error_type']}" if row.get("error_type") else "")
                + (f", HTTP {row['candidate_status_code']}" if failed and row.get("candidate_status_code") else "")
                + f")  cost ${row['baseline_cost_usd']:.5f} → ${row['candidate_cost_usd']:.5f}"
                f"  latency {row['baseline_latency_ms']:,.0f} → {_ms(row['candidate_latency_ms'])} ms",
            )
        )
        if failed and row.get("candidate_error_message"):
            parts.append(Text(f"  provider said: {row['candidate_error_message']}", style="red"))
        if "baseline_text" in row:
            table = Table(show_header=True, expand=True)
            table.add_column("baseline", ratio=1)
            table.add_column("candidate", ratio=1)
            table.add_row(row.get("baseline_text") or "", row.get("candidate_text") or "")
            parts.append(table)
    return Group(*parts)


def judge_preflight_table(result: JudgePreflight) -> Table:
    """Pairs per bucket, the estimate and the caps of a judge preflight."""
    table = Table(title="Judge preflight", title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value")
    by_bucket = ", ".join(f"{b} {n}" for b, n in result.effective_by_bucket.items())
    table.add_row("pairs", f"{result.effective_pair_count:,} ({by_bucket})")
    table.add_row("per-call estimate", f"${result.per_call_estimate_usd:.6f}")
    table.add_row("estimated cost", f"${result.estimated_cost_usd:.4f}")
    table.add_row("project judge cap", f"${result.spend_cap_usd:g}")
    table.add_row("suggested --spend-cap", f"${result.suggested_spend_cap_usd:.4f}")
    table.add_row("requires confirmation", "yes" if result.requires_confirmation else "no")
    table.add_row("rubric", result.rubric)
    table.add_row("rubric hash", result.rubric_hash[:16] + "…")
    for note in result.notes:
        table.add_row("note", Text(note, style="dim"))
    return table


_HOW_TO_READ = (
    "How to read it: each share is the candidate's verdict against the logged answer, with a 95% Wilson "
    "interval; a wide interval means too few pairs to tell. High-similarity pairs should be mostly "
    "'equivalent'; the 'worse' share of the major bucket is the headline risk."
)


def judge_run_view(run: JudgeRun) -> Group:
    """A judge run: status, breakdown with intervals, and the by-bucket table."""
    parts: list[Table | Text] = [
        Text.assemble(
            (f"judge run {run.id}", "bold"),
            f"  {run.status}  {run.judge_model}  order={run.order}  ",
            f"spend ${run.spend_usd:.4f} of ${run.spend_cap_usd:g}",
        )
    ]
    if run.status_reason:
        parts.append(Text(run.status_reason, style="yellow"))
    if run.estimate_error is not None:
        parts.append(Text(estimate_error_line(run.estimate_error)))
    summary = run.summary
    if summary:
        table = Table(
            title=f"{summary['judged_count']:,} pairs judged, {summary['parse_errors']:,} parse errors",
            title_justify="left",
        )
        for col in ("verdict", "share", "95% CI", ""):
            table.add_column(col)
        for verdict, share in summary["verdict_breakdown"].items():
            ci = summary["verdict_breakdown_ci_95"][verdict]
            bar = Text(
                " " * round(ci["lower"] * 40) + "▕" + "█" * max(1, round((ci["upper"] - ci["lower"]) * 40)) + "▏"
            )
            table.add_row(verdict, f"{share:.0%}", f"[{ci['lower']:.0%}, {ci['upper']:.0%}]", bar)
        parts.append(table)
        buckets = Table(title="By similarity bucket", title_justify="left")
        for col in ("bucket", "n", "better", "equivalent", "worse"):
            buckets.add_column(col)
        for bucket, entry in summary["by_bucket"].items():
            v = entry["verdicts"]
            buckets.add_row(
                bucket, str(entry["n"]), f"{v['better']:.0%}", f"{v['equivalent']:.0%}", f"{v['worse']:.0%}"
            )
        parts.append(buckets)
        if summary.get("position_flip_rate") is not None:
            parts.append(Text(f"Position flip rate (A/B vs B/A disagreed): {summary['position_flip_rate']:.0%}"))
        if summary.get("position_bias_warning"):
            parts.append(Text(summary["position_bias_warning"], style="bold yellow"))
        parts.append(Text(_HOW_TO_READ, style="dim"))
    for note in run.notes:
        parts.append(Text(f"• {note}", style="dim"))
    return Group(*parts)


def verdicts_view(rows: list[dict[str, Any]]) -> Group:
    """Per-pair verdicts with both answers."""
    parts: list[Table | Text] = []
    for row in rows:
        verdict = row.get("verdict") or "parse error"
        sim = "n/a" if row.get("similarity") is None else f"{row['similarity']:.3f}"
        parts.append(
            Text.assemble((f"{row['request_id']}  {verdict}", "bold"), f"  bucket {row['bucket']}  similarity {sim}")
        )
        if row.get("reason"):
            parts.append(Text(f"judge: {row['reason']}", style="italic"))
        table = Table(show_header=True, expand=True)
        table.add_column("baseline", ratio=1)
        table.add_column("candidate", ratio=1)
        table.add_row(row.get("baseline_text") or "", row.get("candidate_text") or "")
        parts.append(table)
    return Group(*parts)


def verdict_view(verdict: dict[str, Any]) -> Group:
    """A scheduled run's verdict banner and its per-predicate breakdown."""
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[verdict["verdict"]]
    banner = Text.assemble((f" {verdict['verdict'].upper()} ", f"bold white on {colour}"), "  ", verdict["summary"])
    table = Table(show_edge=False)
    for column in ("metric", "op", "value", "observed", "status"):
        table.add_column(column, justify="right" if column in ("value", "observed") else "left")
    for p in verdict["predicates"]:
        observed = "n/a" if p["observed"] is None else f"{p['observed']:.4g}"
        if p.get("interval"):
            observed += f" ({interval_text(Interval.model_validate(p['interval']), '{:.4g}')})"
        status = {"pass": "[green]pass[/]", "fail": "[red]fail[/]", "inconclusive": "[yellow]inconclusive[/]"}.get(
            p["status"], "[yellow]unavailable[/]"
        )
        table.add_row(p["metric"], p["op"], f"{p['value']:g}", observed, status)
    return Group(banner, table)


def logged_view(entry: LoggedRequest) -> Group:
    """One logged request: its metadata, the prompt's messages and the answer."""
    cost = "unknown" if entry.cost_usd is None else f"${entry.cost_usd:.6f}"
    latency = "unknown" if entry.latency_ms is None else f"{entry.latency_ms:,.0f} ms"
    error = f" ({entry.error_type})" if entry.error_type else ""
    head = (
        f"{entry.request_id} ({entry.project_id}) at {entry.timestamp:%Y-%m-%d %H:%M:%S}Z: {entry.model} via "
        f"{entry.provider}, {entry.status}{error}; {entry.input_tokens:,} in / {entry.output_tokens:,} out tokens, "
        f"{cost}, {latency}"
    )
    parts: list[Any] = [Text(head, style="bold")]
    if entry.tags:
        parts.append(Text(f"tags: {', '.join(entry.tags)}"))
    if entry.request_json is None:
        parts.append(Text("(the prompt and answer were not logged: metadata-only logs)", style="dim"))
        return Group(*parts)
    parts.append(Text(request_text(entry.request_json)))
    parts.append(Text("[answer] " + (entry.response_text or "(none logged)"), style="green"))
    return Group(*parts)
