"""Start runs as Prefect flow runs, and the runner that executes them.

The two flows are deployed as ``<flow>/on-demand`` deployments that a
``Runner`` serves; launching a run creates a flow run of its deployment
(it shows in the Prefect UI), and the runner executes it in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import Any, cast
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.runner import Runner
from prefect.states import Cancelled

from flows.runs import experiment_flow, judge_flow
from flows.scheduling import scheduled_deployment_ids

log = logging.getLogger("rehearsal.runner")

DEPLOYMENT = "on-demand"
#: Per store table: the flow that executes its runs and the flow's parameter.
FLOWS: dict[str, tuple[Flow[Any, Any], str]] = {
    "experiments": (experiment_flow, "experiment_id"),
    "judge_runs": (judge_flow, "judge_run_id"),
}


def on_demand_deployments() -> list[RunnerDeployment]:
    """The deployments one-off runs are launched from (no schedule; the flows are found by module path)."""
    return [
        cast(
            RunnerDeployment,
            f.to_deployment(
                name=DEPLOYMENT,
                entrypoint_type=EntrypointType.MODULE_PATH,
                tags=["rehearsal"],
                description=f"One-off rehearsal runs: {f.description}",
            ),
        )
        for f, _ in FLOWS.values()
    ]


class PrefectLauncher:
    """Launches stored runs as flow runs of the on-demand deployments."""

    def __init__(self) -> None:
        self._deployment_ids: dict[str, UUID] = {}

    def launch(self, table: str, run_id: str) -> str:
        """Create the flow run that will execute ``run_id``; returns its id."""
        flow, parameter = FLOWS[table]
        with get_client(sync_client=True) as client:
            if table not in self._deployment_ids:
                self._deployment_ids[table] = client.read_deployment_by_name(f"{flow.name}/{DEPLOYMENT}").id
            flow_run = client.create_flow_run_from_deployment(
                self._deployment_ids[table], parameters={parameter: run_id}, name=run_id, tags=["rehearsal"]
            )
        return str(flow_run.id)

    def cancel(self, flow_run_id: str) -> None:
        """Cancel a flow run whose run was cancelled while queued, so the runner starts no process for it."""
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(flow_run_id), Cancelled(message="cancelled on request"))

    def flow_states(self, flow_run_ids: list[str]) -> dict[str, str]:
        """The state type of each flow run (e.g. ``CRASHED``), in one query; ones Prefect cannot say are left out."""
        try:
            ids = [UUID(i) for i in flow_run_ids]
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        except Exception as exc:  # unreachable: unknown, never "dead"
            log.debug("could not read flow runs: %s", exc)
            return {}
        return {str(run.id): run.state.type.value for run in runs if run.state is not None}


class RunnerThread:
    """A Prefect ``Runner`` serving the on-demand deployments from a background thread."""

    def __init__(self, *, poll_seconds: float = 1.0, limit: int | None = 8, watch_seconds: float = 2.0) -> None:
        self.watch_seconds = watch_seconds
        self.runner = Runner(name="rehearsal", query_seconds=poll_seconds, limit=limit, pause_on_shutdown=False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        context = contextvars.copy_context()  # Prefect's settings context (e.g. a test server) goes along
        self._thread = threading.Thread(target=context.run, args=(self._main,), name="rehearsal-runner", daemon=True)

    def _main(self) -> None:
        deployments = on_demand_deployments()  # built outside the loop: in one, to_deployment is a coroutine

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            for deployment in deployments:
                await self.runner.aadd_deployment(deployment)
            await self._watch_scheduled()
            self._ready.set()
            watcher = asyncio.create_task(self._watch_scheduled(forever=True))
            try:
                await self.runner.start()
            finally:
                watcher.cancel()

        try:
            asyncio.run(serve())
        except BaseException as exc:  # surfaced by start() when it happens before the runner is up
            self._error = exc
            self._ready.set()

    async def _watch_scheduled(self, forever: bool = False) -> None:
        """Serve the deployments of scheduled experiments too, including ones created after start-up.

        They are created through the API (not through this runner), so they are registered by id; going
        through ``aadd_deployment`` would re-apply them and undo edits made in the Prefect UI.
        """
        while True:
            try:
                for deployment_id, name in (await scheduled_deployment_ids()).items():
                    self.runner._deployment_registry.register_deployment(deployment_id, name)
            except Exception as exc:  # the server may be briefly unreachable; try again next round
                log.warning("could not list scheduled deployments: %s", exc)
            if not forever:
                return
            await asyncio.sleep(self.watch_seconds)

    def start(self, timeout_s: float = 60) -> RunnerThread:
        """Register the deployments and start polling; raises if that fails."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("the Prefect runner did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the Prefect runner could not start: {self._error}") from self._error
        return self

    def stop(self, timeout_s: float = 30) -> None:
        """Stop polling, end the flow-run processes it started, and wait for the thread."""
        if self._loop is not None and self._thread.is_alive() and self.runner.started:
            asyncio.run_coroutine_threadsafe(self.runner.astop(), self._loop).result(timeout_s)
        self._thread.join(timeout_s)
