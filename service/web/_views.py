"""What the dashboard draws, computed from the service layer's answers (pure: no I/O, no HTTP).

Charts are inline SVG drawn server-side: these functions turn numbers into
geometry, and the templates only place it. The word-level diff is ``difflib``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from markupsafe import Markup

from engine.schema import Interval
from engine.similarity import Histogram

#: Tokens of a word diff: runs of whitespace, words, and single punctuation marks.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
#: Above this many tokens a side, the diff is skipped (``SequenceMatcher`` is quadratic at worst).
DIFF_MAX_TOKENS = 6000

SegmentKind = Literal["same", "removed", "added"]


@dataclass(frozen=True)
class Segment:
    """A run of text in one side of a diff."""

    kind: SegmentKind
    text: str


@dataclass
class WordDiff:
    """Both answers cut into segments: the baseline's removals and the candidate's additions are marked."""

    baseline: list[Segment] = field(default_factory=list)
    candidate: list[Segment] = field(default_factory=list)
    changed_words: int = 0
    total_words: int = 0
    compared: bool = True  # False when one side was too long to diff

    @property
    def changed_share(self) -> float | None:
        """Share of words (both sides) that changed; ``None`` without words or without a comparison."""
        return self.changed_words / self.total_words if self.compared and self.total_words else None


def _append(segments: list[Segment], kind: SegmentKind, tokens: Sequence[str]) -> None:
    text = "".join(tokens)
    if not text:
        return
    if segments and segments[-1].kind == kind:
        segments[-1] = Segment(kind, segments[-1].text + text)
    else:
        segments.append(Segment(kind, text))


def _words(tokens: Iterable[str]) -> int:
    return sum(1 for t in tokens if not t.isspace())


def _absorbed(opcodes: Sequence[tuple[str, int, int, int, int]], index: int, a: Sequence[str]) -> bool:
    """An unchanged run of at most one word between two changes reads as part of one change.

    Without this, two rewritten sentences show as a confetti of highlighted words
    separated by the spaces and the odd "the" they happen to share.
    """
    if index == 0 or index == len(opcodes) - 1:
        return False
    _, i1, i2, _, _ = opcodes[index]
    return _words(a[i1:i2]) <= 1


def word_diff(baseline: str | None, candidate: str | None) -> WordDiff:
    """A word-level diff of the two answers (whitespace is kept, so each side reads as written)."""
    a = _TOKEN.findall(baseline or "")
    b = _TOKEN.findall(candidate or "")
    diff = WordDiff(total_words=_words(a) + _words(b))
    if len(a) > DIFF_MAX_TOKENS or len(b) > DIFF_MAX_TOKENS:
        diff.compared = False
        _append(diff.baseline, "same", a)
        _append(diff.candidate, "same", b)
        return diff
    opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    for index, (op, i1, i2, j1, j2) in enumerate(opcodes):
        if op == "equal" and not _absorbed(opcodes, index, a):
            _append(diff.baseline, "same", a[i1:i2])
            _append(diff.candidate, "same", b[j1:j2])
            continue
        _append(diff.baseline, "removed", a[i1:i2])
        _append(diff.candidate, "added", b[j1:j2])
        diff.changed_words += _words(a[i1:i2]) + _words(b[j1:j2])
    return diff


# --------------------------------------------------------------------------- histogram
@dataclass(frozen=True)
class Bar:
    """One histogram bar in SVG user units."""

    x: float
    y: float
    width: float
    height: float
    count: int
    lower: float
    upper: float
    side: Literal["below", "across", "above"]  # where the bucket sits against the threshold

    @property
    def label(self) -> str:
        """The bucket's range, e.g. ``0.8-0.9``."""
        return f"{self.lower:.1f}–{self.upper:.1f}"


@dataclass(frozen=True)
class HistogramChart:
    """The similarity histogram as SVG geometry."""

    width: int
    height: int
    plot_left: float
    plot_bottom: float
    plot_width: float
    plot_height: float
    bars: list[Bar]
    threshold_x: float
    ticks: list[tuple[float, str]]  # (x, label) on the similarity axis
    max_count: int


def histogram_chart(hist: Histogram, *, width: int = 480, height: int = 230) -> HistogramChart:
    """Ten bars on a fixed [0, 1] axis, heights proportional to the counts, and the threshold's x."""
    # Room at the edges for the end ticks and the threshold's label (larger on phones).
    left, right, top, bottom = 16.0, 16.0, 36.0, 30.0
    plot_width = width - left - right
    plot_height = height - top - bottom
    plot_bottom = height - bottom
    max_count = max((b.count for b in hist.buckets), default=0)
    bars = []
    gap = 3.0
    for bucket in hist.buckets:
        x0 = left + bucket.lower * plot_width
        x1 = left + bucket.upper * plot_width
        h = plot_height * bucket.count / max_count if max_count else 0.0
        side: Literal["below", "across", "above"] = (
            "above" if bucket.lower >= hist.threshold else "below" if bucket.upper <= hist.threshold else "across"
        )
        bars.append(
            Bar(
                x=round(x0 + gap / 2, 2),
                y=round(plot_bottom - h, 2),
                width=round(x1 - x0 - gap, 2),
                height=round(h, 2),
                count=bucket.count,
                lower=bucket.lower,
                upper=bucket.upper,
                side=side,
            )
        )
    ticks = [(round(left + t / 10 * plot_width, 2), f"{t / 10:.1f}") for t in range(0, 11, 2)]
    return HistogramChart(
        width=width,
        height=height,
        plot_left=left,
        plot_bottom=plot_bottom,
        plot_width=plot_width,
        plot_height=plot_height,
        bars=bars,
        threshold_x=round(left + hist.threshold * plot_width, 2),
        ticks=ticks,
        max_count=max_count,
    )


# --------------------------------------------------------------------------- sparkline
@dataclass(frozen=True)
class SparkPoint:
    """One run's observation of a metric."""

    x: float
    y: float
    value: float
    status: str  # pass, fail or unavailable
    when: str


@dataclass(frozen=True)
class Sparkline:
    """A metric over past runs (oldest left), with its criterion's limit as a line."""

    width: int
    height: int
    points: list[SparkPoint]
    path: str  # SVG path through the observed points; a missing value breaks the line
    limit_y: float | None
    low: float | None
    high: float | None


def sparkline(
    observations: Sequence[tuple[str, float | None, str]],
    limit: float | None,
    *,
    width: int = 160,
    height: int = 40,
) -> Sparkline:
    """``observations`` are ``(when, observed, status)``, oldest first; ``limit`` is the predicate's value."""
    pad = 4.0
    values = [v for _, v, _ in observations if v is not None and math.isfinite(v)]
    span_values = values + ([limit] if limit is not None else [])
    if not span_values:
        return Sparkline(width, height, [], "", None, None, None)
    low, high = min(span_values), max(span_values)
    if high == low:
        low, high = low - 1.0, high + 1.0

    def y_of(value: float) -> float:
        return round(pad + (high - value) / (high - low) * (height - 2 * pad), 2)

    step = (width - 2 * pad) / max(len(observations) - 1, 1)
    points: list[SparkPoint] = []
    path: list[str] = []
    pen_down = False
    for i, (when, value, status) in enumerate(observations):
        if value is None or not math.isfinite(value):
            pen_down = False
            continue
        x = round(pad + i * step if len(observations) > 1 else width / 2, 2)
        y = y_of(value)
        points.append(SparkPoint(x, y, value, status, when))
        path.append(f"{'L' if pen_down else 'M'}{x},{y}")
        pen_down = True
    return Sparkline(
        width=width,
        height=height,
        points=points,
        path=" ".join(path),
        limit_y=y_of(limit) if limit is not None else None,
        low=min(values) if values else None,
        high=max(values) if values else None,
    )


def _same_criterion(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(a["metric"] == b["metric"] and a["op"] == b["op"] and a.get("params") == b.get("params"))


def criterion_history(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per predicate of the newest run's verdict: its observations over ``runs`` (given newest first).

    Each entry holds ``metric``, ``op``, ``value``, ``params``, the last ``observed`` and ``status``, and a
    ``sparkline`` over the runs that judged that metric (oldest first).
    """
    judged = [r for r in runs if r.get("verdict")]
    if not judged:
        return []
    history: list[dict[str, Any]] = []
    for predicate in judged[0]["verdict"]["predicates"]:
        observations: list[tuple[str, float | None, str]] = []
        for run in reversed(judged):
            match = next((p for p in run["verdict"]["predicates"] if _same_criterion(p, predicate)), None)
            if match is not None:
                observations.append((run["when"], match["observed"], match["status"]))
        history.append(predicate | {"sparkline": sparkline(observations, predicate["value"])})
    return history


# --------------------------------------------------------------------------- judge
@dataclass(frozen=True)
class CiRow:
    """One verdict's share with its Wilson 95% interval, in percent and as SVG x positions."""

    verdict: str
    share: float
    lower: float
    upper: float
    bar_width: float
    lower_x: float
    upper_x: float


def ci_rows(summary: Mapping[str, Any], *, width: float = 300) -> list[CiRow]:
    """The judge summary's breakdown, one row per verdict (better, equivalent, worse)."""
    rows = []
    shares = summary.get("verdict_breakdown", {})
    intervals = summary.get("verdict_breakdown_ci_95", {})
    for verdict in ("better", "equivalent", "worse"):
        share = float(shares.get(verdict, 0.0))
        ci = intervals.get(verdict, {"lower": share, "upper": share})
        lower, upper = float(ci["lower"]), float(ci["upper"])
        rows.append(
            CiRow(
                verdict=verdict,
                share=share * 100,
                lower=lower * 100,
                upper=upper * 100,
                bar_width=round(share * width, 2),
                lower_x=round(lower * width, 2),
                upper_x=round(upper * width, 2),
            )
        )
    return rows


# --------------------------------------------------------------------------- routes and deltas
def route_rows(baseline: Mapping[str, float] | None, candidate: Mapping[str, float] | None) -> list[dict[str, Any]]:
    """Every route of either side with both shares, largest first."""
    baseline, candidate = baseline or {}, candidate or {}
    routes = set(baseline) | set(candidate)
    rows = [{"route": r, "baseline": baseline.get(r, 0.0), "candidate": candidate.get(r, 0.0)} for r in routes]
    return sorted(rows, key=lambda row: (-max(row["baseline"], row["candidate"]), row["route"]))


def verdict_detail(summary: str, verdict: str) -> str:
    """The verdict's summary line without its leading ``fail (warn): `` (the banner already says it)."""
    head, sep, rest = summary.partition(": ")
    return rest if sep and head.split(" ")[0] == verdict else summary


def tone(delta: float | None, *, lower_is_better: bool = True, tolerance: float = 0.5) -> str:
    """``good``, ``bad`` or ``flat`` for a delta in percent (within ``tolerance`` is flat)."""
    if delta is None or not math.isfinite(delta) or abs(delta) <= tolerance:
        return "flat"
    return "good" if (delta < 0) == lower_is_better else "bad"


# --------------------------------------------------------------------------- formatting
def usd(value: float | None) -> str:
    """Dollars as money: cents from $1 up and for whole cents ($0.50), more digits only for sub-cent amounts."""
    if value is None:
        return "—"
    magnitude = abs(value)
    whole_cents = abs(round(magnitude * 100) - magnitude * 100) < 1e-6
    digits = 2 if magnitude >= 1 or whole_cents else 4 if magnitude >= 0.01 else 6
    sign = "-" if value < 0 else ""
    return f"{sign}${magnitude:,.{digits}f}"


def signed_usd(value: float | None) -> str:
    """A dollar delta with its sign."""
    if value is None:
        return "—"
    return ("+" if value > 0 else "") + usd(value)


def pct(value: float | None, *, signed: bool = False, digits: int = 1) -> str:
    """A number already in percent."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}%" if signed else f"{value:.{digits}f}%"


def _bounds(interval: Mapping[str, float] | Interval) -> tuple[float, float]:
    if isinstance(interval, Interval):
        return interval.low, interval.high
    return float(interval["low"]), float(interval["high"])


def interval_pct(interval: Mapping[str, float] | Interval | None, digits: int = 1) -> str:
    """A 90% interval in percent as ``−48% … −35%`` (empty without one)."""
    if interval is None:
        return ""
    return " … ".join(pct(v, signed=True, digits=digits).replace("-", "−") for v in _bounds(interval))


def whisker(
    point: float | None, interval: Mapping[str, float] | Interval | None, *, width: int = 150, height: int = 16
) -> Markup:
    """An inline SVG of a point and its 90% interval on an axis through 0 (empty without an interval)."""
    if point is None or interval is None:
        return Markup("")
    low, high = _bounds(interval)
    if not all(map(math.isfinite, (point, low, high))):
        return Markup("")
    reach = max(abs(low), abs(high), abs(point), 1.0) * 1.1

    def x(v: float) -> float:
        return round((v + reach) / (2 * reach) * width, 1)

    mid = height / 2
    label = f"90% interval {interval_pct(interval)}, point {pct(point, signed=True)}"
    return Markup(
        f'<svg class="whisker" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{label}"><line class="axis" x1="{x(0)}" y1="0" x2="{x(0)}" y2="{height}"/>'
        f'<line class="range" x1="{x(low)}" y1="{mid}" x2="{x(high)}" y2="{mid}"/>'
        f'<line class="cap" x1="{x(low)}" y1="3" x2="{x(low)}" y2="{height - 3}"/>'
        f'<line class="cap" x1="{x(high)}" y1="3" x2="{x(high)}" y2="{height - 3}"/>'
        f'<circle class="point" cx="{x(point)}" cy="{mid}" r="3.5"/></svg>'
    )


def share(value: float | None, digits: int = 0) -> str:
    """A share in [0, 1] as a percentage."""
    return "—" if value is None else pct(value * 100, digits=digits)


def ms(value: float | None) -> str:
    """Milliseconds, as seconds once they are long."""
    if value is None:
        return "—"
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:,.0f} ms"


def when(value: dt.datetime | str | None) -> str:
    """A UTC time to the minute."""
    if value is None:
        return "—"
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def relative(value: dt.datetime | None, now: dt.datetime) -> str:
    """``in 3 h``, ``5 min ago``, … (coarse, for schedules)."""
    if value is None:
        return "—"
    seconds = (value - now).total_seconds()
    size = abs(seconds)
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if size >= length:
            amount = f"{size / length:.0f} {unit}"
            break
    else:
        amount = "moments"
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"
