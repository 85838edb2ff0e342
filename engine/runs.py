"""What every paid run shares: its context, the stop rules, and calling through the fan-out with checkpoints.

With-responses experiments and judge runs both reserve and settle through
one spend tracker per run, journal each batch before it is sent, checkpoint
each batch that comes back, report progress, and stop on the cap, a
projected overrun, a cancel, the hard timeout, or a provider that refuses
the run's first calls alike (a model that does not exist, a bad key).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.credentials import Credentials
from engine.errors import ConfigError
from engine.pricing import Catalog
from engine.results import ResultFiles
from engine.schema import EstimateError
from engine.settings import Settings
from engine.store import Store

if TYPE_CHECKING:  # the fan-out brings Ray and openai: imported only by runs that call providers
    from engine.fanout import Endpoint, FanoutOptions, FanoutReport, Job, Outcome
    from engine.providers import ChatResult

AUTO_CANCEL_RATIO = 1.5
#: Projected spend is checked after every this many settled calls.
AUTO_CANCEL_EVERY = 50
#: The guide's floor for suggested caps, so penny-sized runs are not cancelled at fractions of a cent.
SUGGESTED_CAP_FLOOR_USD = 0.05
#: A run whose first this many calls are all refused alike (one non-retryable 4xx) stops ``failed``.
REFUSAL_PROBE = 20
#: Stops that end a run ``failed`` (the others, but the cap, end it ``cancelled``).
FAILING_STOPS = frozenset({"timeout", "refused"})


def suggested_cap(estimated_usd: float, limit_usd: float) -> float:
    """``min(max(2 x estimate, $0.05), limit)``: the cap a preflight suggests."""
    return min(max(2 * estimated_usd, SUGGESTED_CAP_FLOOR_USD), limit_usd)


def check_spend_cap(cap_usd: float | None, limit_usd: float, limit_name: str, run: str) -> float:
    """A run's ``spendCapUsd``: required, and at most the project's ``limit_name``."""
    if cap_usd is None:
        raise ConfigError(f"spendCapUsd is required for {run}", param="spendCapUsd")
    if cap_usd > limit_usd:
        raise ConfigError(
            f"spendCapUsd {cap_usd:g} is above the project's {limit_name} {limit_usd:g}", param="spendCapUsd"
        )
    return cap_usd


@dataclass(frozen=True)
class RunContext:
    """What ``execute`` needs besides the experiment."""

    store: Store
    catalog: Catalog
    credentials: Credentials
    logs_root: str
    settings: Settings
    on_progress: Callable[[int, int, float], None] | None = None
    #: Called whenever the run checks in cooperatively (so a watchdog knows it is still stopping on its own).
    tick: Callable[[], None] | None = None


@dataclass
class RunWatch:
    """Decides, after each batch, whether a run must stop (cancel, timeout, projected overrun)."""

    status_of: Callable[[], str]
    cap_usd: float
    total: int
    timeout_s: float
    done: int = 0
    spent: float = 0.0
    checked_at: int = 0
    started: float = field(default_factory=time.monotonic)
    reason: str | None = None

    def __call__(self, batch_done: int, batch_spent: float) -> str | None:
        """Book a finished batch; return why the run must stop, or ``None``."""
        self.done += batch_done
        self.spent += batch_spent
        if self.status_of() == "cancelled":
            return self.stop("cancel", "cancelled on request")
        if time.monotonic() - self.started > self.timeout_s:
            return self.stop(
                "timeout", f"hard timeout: the run passed {self.timeout_s / 60:g} minutes with {self.done:,} pairs done"
            )
        if self.done - self.checked_at >= AUTO_CANCEL_EVERY:
            self.checked_at = self.done - self.done % AUTO_CANCEL_EVERY
            projected = self.spent / self.done * self.total
            if projected > AUTO_CANCEL_RATIO * self.cap_usd:
                return self.stop(
                    "auto_cancel",
                    f"auto-cancelled: projected spend ${projected:.4f} for {self.total:,} pairs exceeds "
                    f"{AUTO_CANCEL_RATIO:g} x the spend cap ${self.cap_usd:g} (spent ${self.spent:.4f} on "
                    f"{self.done:,} pairs)",
                )
        return None

    def stop(self, kind: str, reason: str) -> str:
        """Record why the run stops; returns ``kind`` (the stop the fan-out reports)."""
        self.reason = reason
        return kind


def refusal_of(result: ChatResult | None) -> tuple[int, str] | None:
    """``(status, message)`` when ``result`` is a refusal: an error the provider answered with a 4xx not worth retrying.

    Rate limits (429) and timeouts (408) are retried, so they are never refusals; neither is a 5xx.
    """
    if result is None or result.status != "error" or result.error_type != "invalid_request":
        return None
    code = result.status_code
    if code is None or not 400 <= code < 500:
        return None
    return code, result.error_message or ""


@dataclass
class RefusalWatch:
    """Watches a run's first ``probe`` calls, to tell whether they are all refused with one status and message.

    Such a run would only pay for (and record) the same error on every pair, so it stops. One answered
    call, one other error or a second kind of refusal among them, and the run goes on.
    """

    probe: int
    first: tuple[int, str] | None = None
    seen: int = 0
    decided: bool = False

    def __call__(self, results: Iterable[ChatResult | None]) -> str | None:
        """Book results in the order they came; ``"404 The model … does not exist"`` once the probe is refused."""
        for result in results:
            if self.decided:
                return None
            refusal = refusal_of(result)
            if refusal is None or (self.first is not None and refusal != self.first):
                self.decided = True
                return None
            self.first, self.seen = refusal, self.seen + 1
            if self.seen >= self.probe:
                self.decided = True
                return f"{refusal[0]} {refusal[1]}".rstrip()
        return None


def fanout_options(settings: Settings) -> FanoutOptions:
    """Fan-out width and retries from the settings."""
    from engine.fanout import FanoutOptions
    from engine.providers import RetryPolicy

    return FanoutOptions(
        workers=settings.workers,
        concurrency=settings.concurrency,
        probe_calls=REFUSAL_PROBE,
        retry=RetryPolicy(
            max_attempts=settings.max_attempts, backoff_s=settings.retry_backoff_s, timeout_s=settings.call_timeout_s
        ),
    )


def endpoint(credentials: Credentials, credential_id: str) -> Endpoint:
    """The endpoint a credential names (its key read from the environment now).

    A credential stored through the API has its base URL checked again here; the endpoint
    then carries the checked target, so the run's calls go to the address that passed.
    """
    from engine.fanout import Endpoint

    credential = credentials.get(credential_id)
    pin = credential.target(credential_id)
    return Endpoint(
        credential.base_url, credential.api_key(credential_id), credential.rate_limit_rps, pin, credential.cost_source
    )


def call_and_record(
    jobs: list[Job],
    *,
    run_id: str,
    cap_usd: float,
    endpoints: dict[str, Endpoint],
    files: ResultFiles,
    rows_of: Callable[[list[Outcome]], list[dict[str, Any]]],
    watch: RunWatch,
    save_progress: Callable[[int, int, float], None],
    ctx: RunContext,
    caller: str = "candidate",
) -> FanoutReport | None:
    """Fan ``jobs`` out under ``cap_usd``; journal what is sent, checkpoint and report progress batch by batch.

    When the first ``REFUSAL_PROBE`` calls (all of them, in a smaller run) are refused alike, nothing
    more is sent: the report's stop is ``refused`` and ``watch.reason`` quotes the provider (``caller``
    names whose provider it was in that reason).
    """
    from engine.fanout import fan_out

    if not jobs:
        return None
    refusals = RefusalWatch(min(REFUSAL_PROBE, len(jobs)))

    def on_outcomes(outcomes: list[Outcome]) -> str | None:
        if ctx.tick is not None:
            ctx.tick()
        files.append(rows_of(outcomes))
        stop = watch(len(outcomes), sum(o.cost_usd for o in outcomes))
        refused = refusals(o.result for o in outcomes)
        if refused is not None and stop is None:
            many = f"the first {refusals.probe:,} calls" if refusals.probe < len(jobs) else f"all {len(jobs):,} calls"
            stop = watch.stop("refused", f"the {caller}'s provider refused {many}: {refused}")
        save_progress(watch.done, watch.total, watch.spent)
        if ctx.on_progress is not None:
            ctx.on_progress(watch.done, watch.total, watch.spent)
        return stop

    return fan_out(
        jobs,
        run_id=run_id,
        cap_usd=max(cap_usd, 0.0),
        endpoints=endpoints,
        on_outcomes=on_outcomes,
        journal=str(files.journal),
        options=fanout_options(ctx.settings),
    )


def unrecorded_calls(files: ResultFiles, run_id: str) -> dict[str, float]:
    """Calls an earlier driver of the run sent but never recorded, with their cost (settled, else reserved).

    Any earlier driver's tracker is fenced off first, so none of its workers can still start a call.
    """
    if not files.journal.exists():
        return {}
    from engine.fanout import ensure_ray, fence

    ensure_ray()
    fence(run_id)
    return files.unrecorded()


def interrupted_note(calls: dict[str, float], what: str) -> str:
    """The note of a resumed run about the calls an earlier process sent but never recorded."""
    return (
        f"{len(calls):,} {what} were in flight when an earlier run stopped: they are not made again, and "
        f"what they may have cost (${sum(calls.values()):.4f}: the provider's usage where it came back, "
        "else the reservation, an upper estimate) counts as spent, so the cap holds against it."
    )


def reported_cost_note(answered: int, unreported: int) -> str:
    """The note of a run whose credential counts the cost the endpoint reports (``cost_source: provider``)."""
    return (
        f"Costs are what the endpoint reported (cost_source: provider): {unreported:,} of {answered:,} answered "
        "calls reported none (no x-litellm-response-cost header) and count at the catalog price."
    )


def estimate_error(
    spent_usd: float, estimated_usd: float, call_costs: np.ndarray, call_estimates: np.ndarray
) -> EstimateError:
    """Actual ÷ estimated spend of a run, and the p50/p90 of actual ÷ estimate over its answered calls.

    ``call_costs`` and ``call_estimates`` are aligned, one entry per answered call; calls estimated at
    nothing are left out of the percentiles (their ratio is undefined).
    """
    costs = np.asarray(call_costs, dtype=float)
    estimates = np.asarray(call_estimates, dtype=float)
    priced = estimates > 0
    ratios = costs[priced] / estimates[priced]
    p50, p90 = np.percentile(ratios, [50, 90]) if ratios.size else (None, None)
    return EstimateError(
        overall=spent_usd / estimated_usd if estimated_usd > 0 else None,
        per_call_p50=None if p50 is None else float(p50),
        per_call_p90=None if p90 is None else float(p90),
        calls=int(ratios.size),
    )


def final_status(
    report: FanoutReport | None, watch: RunWatch, cap_reason: str, cancelled_meanwhile: bool
) -> tuple[str, str | None]:
    """How a run ended: ``completed``, ``cancelled`` (cap, auto-cancel, request) or ``failed`` (timeout, refused)."""
    if report is not None and report.stop == "cap":
        return "cancelled", cap_reason
    if report is not None and report.stop is not None:
        return ("failed" if report.stop in FAILING_STOPS else "cancelled"), watch.reason
    if cancelled_meanwhile:
        return "cancelled", "cancelled on request"
    return "completed", None
