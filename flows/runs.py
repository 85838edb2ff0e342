"""Experiment and judge runs as Prefect flows: thin tasks over ``engine.execution``.

Each flow run executes one stored run by id, so it shows in the Prefect UI
with its logs; the run itself (its status, progress and results) lives in
rehearsal's store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prefect import flow, get_run_logger, task

from engine import execution
from engine.runs import RunContext
from engine.settings import Settings

EXPERIMENT_FLOW = "rehearsal-experiment"
JUDGE_FLOW = "rehearsal-judge-run"


def progress_logger(
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> Callable[[int, int, float], None]:
    """A progress callback that logs a run's progress each tenth of the way."""
    last = [-1]

    def report(done: int, total: int, spent: float) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth != last[0]:
            last[0] = tenth
            logger.info("%s of %s done, $%.4f spent", f"{done:,}", f"{total:,}", spent)

    return report


def _context() -> RunContext:
    # Settings come from the environment the runner passes to its flow-run processes.
    return execution.context_for(Settings(), progress_logger(get_run_logger()))


def _outcome(kind: str, run_id: str, status: str, reason: str | None) -> str:
    logger = get_run_logger()
    logger.info("%s %s ended %s%s", kind, run_id, status, f": {reason}" if reason else "")
    if status == "failed":
        raise RuntimeError(f"{kind} {run_id} failed: {reason}")
    return status


@task(name="execute experiment", persist_result=False)
def execute_experiment(experiment_id: str) -> tuple[str, str | None]:
    """Run (or resume) the experiment; returns its final status and reason."""
    experiment = execution.run_experiment(_context(), experiment_id, dedicated=True)
    return experiment.status, experiment.status_reason


@task(name="execute judge run", persist_result=False)
def execute_judge_run(run_id: str) -> tuple[str, str | None]:
    """Run (or resume) the judge run; returns its final status and reason."""
    run = execution.run_judge_run(_context(), run_id, dedicated=True)
    return run.status, run.status_reason


@flow(name=EXPERIMENT_FLOW, persist_result=False, log_prints=True)
def experiment_flow(experiment_id: str) -> str:
    """Replay (routing-only) or re-run a sample (with-responses) of one stored experiment."""
    status, reason = execute_experiment(experiment_id)
    return _outcome("experiment", experiment_id, status, reason)


@flow(name=JUDGE_FLOW, persist_result=False, log_prints=True)
def judge_flow(judge_run_id: str) -> str:
    """Judge the sampled pairs of one stored judge run."""
    status, reason = execute_judge_run(judge_run_id)
    return _outcome("judge run", judge_run_id, status, reason)
