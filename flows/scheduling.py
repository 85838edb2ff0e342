"""Scheduled experiments as Prefect deployments: Prefect holds each one's cron and pause state.

One deployment of the scheduled-run flow per scheduled experiment, named
after its id, with a UTC cron schedule. Edits made in the Prefect UI (cron,
pause) are what our API reads back.
"""

from __future__ import annotations

import contextlib
from typing import cast
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.schedules import SCHEDULE_TYPES, CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron

from engine.schedules import ScheduledExperiment
from flows.scheduled import SCHEDULED_FLOW, scheduled_flow


class PrefectScheduler:
    """Creates, edits, pauses, fires and reads the deployments of scheduled experiments."""

    def create(self, schedule: ScheduledExperiment) -> str:
        """The schedule's deployment (active, cron in UTC); returns its id."""
        deployment = cast(
            RunnerDeployment,
            scheduled_flow.to_deployment(
                name=schedule.id,
                schedule=Cron(schedule.cron_expression, timezone="UTC"),
                parameters={"scheduled_experiment_id": schedule.id},
                entrypoint_type=EntrypointType.MODULE_PATH,
                tags=["rehearsal", "scheduled", schedule.project_id],
                description=f"{schedule.name or schedule.id} (project {schedule.project_id}); "
                "edit the cron or pause it here or through the rehearsal API",
            ),
        )
        return str(deployment.apply())

    def set_cron(self, deployment_id: str, cron: str) -> None:
        """Replace the deployment's cron (its active flag is kept)."""
        with get_client(sync_client=True) as client:
            schedules = client.read_deployment_schedules(UUID(deployment_id))
            new = CronSchedule(cron=cron, timezone="UTC")
            if schedules:
                client.update_deployment_schedule(UUID(deployment_id), schedules[0].id, schedule=new)
            else:
                entries: list[tuple[SCHEDULE_TYPES, bool]] = [(new, True)]
                client.create_deployment_schedules(UUID(deployment_id), entries)

    def pause(self, deployment_id: str) -> None:
        """Stop future fires (history is kept)."""
        with get_client(sync_client=True) as client:
            client.pause_deployment(UUID(deployment_id))

    def resume(self, deployment_id: str) -> None:
        """Fire on the cron again."""
        with get_client(sync_client=True) as client:
            client.resume_deployment(UUID(deployment_id))

    def delete(self, deployment_id: str) -> None:
        """Remove the deployment (its past flow runs stay in Prefect, our runs stay in the store)."""
        with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
            client.delete_deployment(UUID(deployment_id))

    def run_now(self, deployment_id: str, experiment_id: str | None = None) -> str:
        """A flow run of the deployment now (``experiment_id``: an already stored fire to execute)."""
        parameters = {} if experiment_id is None else {"experiment_id": experiment_id}
        with get_client(sync_client=True) as client:
            flow_run = client.create_flow_run_from_deployment(
                UUID(deployment_id), parameters=parameters, tags=["rehearsal", "run-now"]
            )
        return str(flow_run.id)

    def state(self, deployment_id: str) -> tuple[str, bool] | None:
        """``(cron, paused)`` as Prefect has them now; ``None`` when the deployment is gone."""
        with get_client(sync_client=True) as client:
            try:
                deployment = client.read_deployment(UUID(deployment_id))
            except ObjectNotFound:
                return None
        crons = [s.schedule.cron for s in deployment.schedules if isinstance(s.schedule, CronSchedule)]
        active = any(s.active for s in deployment.schedules)
        return (crons[0] if crons else ""), bool(deployment.paused or not active)


async def scheduled_deployment_ids() -> dict[UUID, str]:
    """Every deployment of the scheduled-run flow (for the runner to serve)."""
    from prefect.client.orchestration import get_client as get_async_client

    async with get_async_client() as client:
        deployments = await client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[SCHEDULED_FLOW])))
    return {d.id: d.name for d in deployments}
