"""What a project's own runs teach about moving traffic from one model to another: token multipliers.

A routing-only replay prices a moved row with the tokens the log's model used. That is wrong when the
candidate answers at another length, or counts the same prompt with another tokenizer. A with-responses
run sends real prompts to the candidate, so each answered pair shows both. ``observe`` keeps, per model
move (baseline model → candidate model), the logged and the candidate's tokens of every answered pair;
``Calibration`` turns a project's stored observations into one ``Move`` per model pair: an input and an
output multiplier, each a point and ``DRAWS`` seeded draws of its uncertainty.

* **Learned** (at least ``MIN_LEARNED_PAIRS`` pairs over the project's most recent runs, at most
  ``MAX_LEARNED_PAIRS``): the point is the ratio of sums (candidate tokens ÷ logged tokens over the pairs,
  what prices a total right); its draws are a bootstrap over the pairs. A move with too few pairs of its
  own learns from the pairs of every move to the same candidate, pooled.
* **Prior** otherwise. Input tokens: 1 within one vendor; across vendors the ratio of the two vendors'
  ``TOKENIZER_RANGES`` (tokens per OpenAI ``o200k`` token, a 90% range each, combined in log space).
  Output tokens: centred on 1 (no direction is known), log-normal with ``VERBOSITY_SIGMA`` plus
  ``VERBOSITY_SIGMA_PER_TIER`` per step of quality tier between the two models.

Pure: numpy over models already in memory. Draws are seeded per move, so one calibration always gives
the same draws.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.pricing import Catalog
from engine.routing import LatencyFit
from engine.schema import Multiplier, Observations, PairObservations, TokenMultipliers

#: Fewest answered pairs of one move before its learned multipliers are trusted over the priors.
MIN_LEARNED_PAIRS = 30
#: Most pairs (the newest runs first) one move learns from.
MAX_LEARNED_PAIRS = 5000
#: Draws of each multiplier (and replicates of each interval).
DRAWS = 200
#: Seed of every draw; a move's own draws add a hash of its names.
CALIBRATION_SEED = 20261201
#: Prompt tokens per OpenAI o200k token, as a 90% range per vendor, for English chat prompts. Rough public
#: figures: Anthropic's tokenizer counts 10-45% more tokens on the same text, Google's a little more.
TOKENIZER_RANGES: dict[str, tuple[float, float]] = {
    "openai": (1.0, 1.0),
    "azure": (1.0, 1.0),
    "anthropic": (1.10, 1.45),
    "google": (0.95, 1.20),
}
#: A vendor not listed above: a wide range.
UNKNOWN_TOKENIZER = (0.80, 1.30)
#: Log-normal spread (sigma) of the output-length prior between two models of one quality tier ...
VERBOSITY_SIGMA = 0.15
#: ... and what each step of quality tier between them adds.
VERBOSITY_SIGMA_PER_TIER = 0.10
#: The "baseline model" of a judge run's observations: the judge preflight's token estimate of each call
#: (so judge preflights learn too). Never pooled with the moves of routed traffic.
JUDGE_ESTIMATE = "judge-preflight-estimate"
#: z of a two-sided 90% interval.
Z90 = 1.6448536269514722


@dataclass(frozen=True)
class Draws:
    """One multiplier: its point, its draws and where it comes from."""

    info: Multiplier
    draws: np.ndarray

    @property
    def point(self) -> float:
        """What prices the moved rows."""
        return self.info.point

    @property
    def is_identity(self) -> bool:
        """Whether it changes nothing (the point is 1 and so is every draw)."""
        return self.info.point == 1.0 and bool(np.all(self.draws == 1.0))


@dataclass(frozen=True)
class Move:
    """The multipliers of rows moved from ``baseline`` to ``candidate``."""

    baseline: str
    candidate: str
    input: Draws
    output: Draws

    @property
    def is_identity(self) -> bool:
        """Whether the move is priced with the logged tokens, exactly."""
        return self.input.is_identity and self.output.is_identity

    def describe(self) -> TokenMultipliers:
        """The move as the experiment records it."""
        return TokenMultipliers(
            baseline_model=self.baseline, candidate_model=self.candidate, input=self.input.info, output=self.output.info
        )


def observe(experiment_id: str, project_id: str, created_at: dt.datetime, pairs: pl.DataFrame) -> Observations:
    """A completed run's answered pairs as observations, per model move.

    ``pairs``: one row per answered pair with ``baseline_model``, ``candidate_model``, the log's
    ``input_tokens`` / ``output_tokens`` and the provider's ``candidate_input_tokens`` /
    ``candidate_output_tokens``, and optionally ``candidate_latency_ms``. Pairs whose logged tokens are 0
    teach nothing and are left out.
    """
    usable = pairs.filter((pl.col("input_tokens") > 0) & (pl.col("output_tokens") > 0)).sort("request_id")
    moves = []
    for (baseline, candidate), group in usable.group_by("baseline_model", "candidate_model", maintain_order=True):
        moves.append(
            PairObservations(
                baseline_model=str(baseline),
                candidate_model=str(candidate),
                logged_input_tokens=group.get_column("input_tokens").to_list(),
                candidate_input_tokens=group.get_column("candidate_input_tokens").fill_null(0).to_list(),
                logged_output_tokens=group.get_column("output_tokens").to_list(),
                candidate_output_tokens=group.get_column("candidate_output_tokens").fill_null(0).to_list(),
                candidate_latency_ms=(
                    group.get_column("candidate_latency_ms").fill_null(0.0).to_list()
                    if "candidate_latency_ms" in group.columns
                    else []
                ),
            )
        )
    moves.sort(key=lambda m: (m.baseline_model, m.candidate_model))
    return Observations(experiment_id=experiment_id, project_id=project_id, created_at=created_at, moves=moves)


def _rng(*names: str) -> np.random.Generator:
    return np.random.default_rng([CALIBRATION_SEED, zlib.crc32("\x00".join(names).encode())])


def _lognormal(point: float, sigma: float, basis: str, rng: np.random.Generator) -> Draws:
    draws = point * np.exp(rng.normal(0.0, sigma, DRAWS)) if sigma > 0 else np.full(DRAWS, point)
    low, high = point * math.exp(-Z90 * sigma), point * math.exp(Z90 * sigma)
    return Draws(Multiplier(point=point, low=low, high=high, source="prior", basis=basis), draws)


def _log_range(bounds: tuple[float, float]) -> tuple[float, float]:
    """Centre and sigma in log space of a 90% range."""
    low, high = math.log(bounds[0]), math.log(bounds[1])
    return (low + high) / 2, (high - low) / (2 * Z90)


class Calibration:
    """The token multipliers of every model move, from a project's observations (newest first) and the priors."""

    def __init__(self, observations: Sequence[Observations], catalog: Catalog) -> None:
        self.observations = list(observations)
        self.catalog = catalog
        self._moves: dict[tuple[str, str], Move] = {}

    def move(self, baseline: str, candidate: str) -> Move:
        """The multipliers of rows moved from ``baseline`` to ``candidate``."""
        key = (baseline, candidate)
        if key not in self._moves:
            learned = self._learned(baseline, candidate)
            self._moves[key] = learned or Move(
                baseline, candidate, self._input_prior(baseline, candidate), self._output_prior(baseline, candidate)
            )
        return self._moves[key]

    def latency_fit(self, candidate: str) -> LatencyFit | None:
        """``latency = a + b * output_tokens`` of ``candidate`` over the answered pairs of every move to it.

        A least-squares line through at least ``MIN_LEARNED_PAIRS`` pairs (at most ``MAX_LEARNED_PAIRS``,
        newest runs first); a line that falls with length is replaced by the mean (slope 0).
        """
        tokens: list[int] = []
        latency: list[float] = []
        runs: list[str] = []
        for record in self.observations:
            for move in record.moves:
                if move.candidate_model != candidate or move.baseline_model == JUDGE_ESTIMATE:
                    continue
                # Records of runs that kept no latencies have none (zip stops at once).
                timed = zip(move.candidate_output_tokens, move.candidate_latency_ms, strict=False)
                kept = [(t, ms) for t, ms in timed if ms > 0]
                kept = kept[: MAX_LEARNED_PAIRS - len(tokens)]
                if kept:
                    tokens += [t for t, _ in kept]
                    latency += [ms for _, ms in kept]
                    runs.append(record.experiment_id)
        if len(tokens) < MIN_LEARNED_PAIRS:
            return None
        x, y = np.asarray(tokens, dtype=np.float64), np.asarray(latency, dtype=np.float64)
        slope, intercept = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(y.mean()))
        if slope < 0:
            slope, intercept = 0.0, float(y.mean())
        return LatencyFit(float(intercept), float(slope), len(tokens), tuple(dict.fromkeys(runs)))

    def _learned(self, baseline: str, candidate: str) -> Move | None:
        """From the pairs of this very move, else from those of every move to ``candidate``."""
        return self._pooled(baseline, candidate, pooled=False) or self._pooled(baseline, candidate, pooled=True)

    def _pooled(self, baseline: str, candidate: str, *, pooled: bool) -> Move | None:
        columns: list[list[int]] = [[], [], [], []]
        runs: list[str] = []
        for record in self.observations:
            for move in record.moves:
                if move.candidate_model != candidate or (
                    move.baseline_model != baseline
                    and (not pooled or JUDGE_ESTIMATE in (baseline, move.baseline_model))
                ):
                    continue
                room = MAX_LEARNED_PAIRS - len(columns[0])
                if room <= 0:
                    break
                runs.append(record.experiment_id)
                for column, values in zip(
                    columns,
                    (
                        move.logged_input_tokens,
                        move.candidate_input_tokens,
                        move.logged_output_tokens,
                        move.candidate_output_tokens,
                    ),
                    strict=True,
                ):
                    column.extend(values[:room])
        pairs = len(columns[0])
        if pairs < MIN_LEARNED_PAIRS:
            return None
        logged_in, cand_in, logged_out, cand_out = (np.asarray(c, dtype=np.float64) for c in columns)
        index = _rng(baseline, candidate, "learned").integers(0, pairs, size=(DRAWS, pairs))
        runs = list(dict.fromkeys(runs))
        runs_text = ", ".join(runs)
        scope = f"of every move to {candidate} (fewer than {MIN_LEARNED_PAIRS} from {baseline}) " if pooled else ""

        def ratio(logged: np.ndarray, cand: np.ndarray, what: str) -> Draws:
            draws = cand[index].sum(axis=1) / logged[index].sum(axis=1)
            low, high = np.quantile(draws, [0.05, 0.95])
            info = Multiplier(
                point=float(cand.sum() / logged.sum()),
                low=float(low),
                high=float(high),
                source="learned",
                basis=f"{what} of {pairs:,} answered pairs {scope}in {runs_text}",
                pairs=pairs,
                runs=runs,
            )
            return Draws(info, draws)

        return Move(
            baseline,
            candidate,
            ratio(logged_in, cand_in, "provider-reported prompt tokens ÷ logged input tokens"),
            ratio(logged_out, cand_out, "candidate output tokens ÷ logged output tokens"),
        )

    def _vendor(self, model: str) -> str | None:
        return self.catalog.provider_of(model)

    def _input_prior(self, baseline: str, candidate: str) -> Draws:
        base, cand = self._vendor(baseline), self._vendor(candidate)
        if base is not None and base == cand:
            return Draws(
                Multiplier(point=1.0, low=1.0, high=1.0, source="prior", basis=f"one vendor ({base}): one tokenizer"),
                np.ones(DRAWS),
            )
        (mu_b, s_b), (mu_c, s_c) = (_log_range(TOKENIZER_RANGES.get(v or "", UNKNOWN_TOKENIZER)) for v in (base, cand))
        basis = f"tokenizer prior: {cand or 'unknown vendor'} vs {base or 'unknown vendor'}"
        return _lognormal(math.exp(mu_c - mu_b), math.hypot(s_b, s_c), basis, _rng(baseline, candidate, "in"))

    def _output_prior(self, baseline: str, candidate: str) -> Draws:
        tiers = [p.quality_tier if (p := self.catalog.rates(m)) else 2 for m in (baseline, candidate)]
        gap = abs(tiers[0] - tiers[1])
        basis = f"verbosity prior: quality tiers {tiers[0]} and {tiers[1]}"
        return _lognormal(
            1.0, VERBOSITY_SIGMA + VERBOSITY_SIGMA_PER_TIER * gap, basis, _rng(baseline, candidate, "out")
        )


__all__ = [
    "CALIBRATION_SEED",
    "DRAWS",
    "JUDGE_ESTIMATE",
    "MAX_LEARNED_PAIRS",
    "MIN_LEARNED_PAIRS",
    "TOKENIZER_RANGES",
    "UNKNOWN_TOKENIZER",
    "VERBOSITY_SIGMA",
    "VERBOSITY_SIGMA_PER_TIER",
    "Calibration",
    "Draws",
    "Move",
    "observe",
]
