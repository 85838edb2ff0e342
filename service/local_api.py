"""The REST API's calls made in this process: the service functions its routes call, under a key's scope.

``LocalApi`` has the same methods and answers (the ``data`` objects, as JSON
values) as :class:`~service.client.RestClient`, so a face (the MCP server, the
CLI) writes each operation once and runs it here or against a server.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python

from engine.errors import ConfigError, Unauthorized
from engine.schema import JudgeRun
from service import core, schedules
from service.client import KEY_ENV, Page
from service.serve import discover_prefect_api

NO_PREFECT = (
    "runs and schedules execute on the Prefect server of `rehearsal serve`: start `rehearsal serve` on the same "
    "REHEARSAL_HOME (its Prefect server is then found by itself), set PREFECT_API_URL to your Prefect server's API, "
    "or pass --server URL to go through the REST API. Reading experiments and estimating costs "
    "work without it."
)


class LocalApi:
    """``RestClient``'s calls, made here: the service functions the REST routes call, with the key's scope."""

    def __init__(self, svc: core.Services, key: str | None = None) -> None:
        self.svc = svc
        self.key = key
        self._launcher: core.Launcher | None = None
        self._scheduler: core.Scheduler | None = None

    def __enter__(self) -> LocalApi:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def scope(self) -> list[str] | None:
        """The key's project ids (``None``: every project), checked again on every call; no key: every project."""
        if self.key is None:
            return None
        key = self.svc.store.authenticate(self.key)
        if key is None:
            raise Unauthorized(f"the management key in {KEY_ENV} is unknown or was revoked")
        return None if key.all_projects else key.project_ids

    def launcher(self) -> core.Launcher:
        """Starts runs as Prefect flow runs (needs ``PREFECT_API_URL``)."""
        if self._launcher is None:
            _need_prefect(self.svc)
            from flows.launch import PrefectLauncher

            self._launcher = PrefectLauncher()
        return self._launcher

    def scheduler(self) -> core.Scheduler:
        """Where schedules live (needs ``PREFECT_API_URL``)."""
        if self._scheduler is None:
            _need_prefect(self.svc)
            from flows.scheduling import PrefectScheduler

            self._scheduler = PrefectScheduler()
        return self._scheduler

    # experiments
    def create_experiment(self, body: Any) -> Any:
        """``POST /experiments``."""
        return _json(core.submit_experiment(self.svc, body, self.launcher(), project_ids=self.scope()))

    def preflight_experiment(self, body: Any) -> Any:
        """``POST /experiments/preflight``."""
        return _json(core.preflight_experiment(self.svc, body, project_ids=self.scope()))

    def list_experiments(
        self, *, project_id: str | None = None, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> Page:
        """``GET /experiments``."""
        items, next_cursor = core.list_experiments(
            self.svc, project_ids=self.scope(), project_id=project_id, status=status, limit=limit, cursor=cursor
        )
        return _json(items), next_cursor

    def get_experiment(self, experiment_id: str) -> Any:
        """``GET /experiments/{id}``."""
        return _json(core.get_experiment(self.svc, experiment_id, project_ids=self.scope()))

    def get_logged_request(self, request_id: str, *, project_id: str | None = None) -> Any:
        """``GET /logs/{request_id}``."""
        return _json(core.get_logged_request(self.svc, request_id, project_id=project_id, project_ids=self.scope()))

    def experiment_results(self, experiment_id: str, **query: Any) -> Page:
        """``GET /experiments/{id}/results``."""
        rows, next_cursor = core.experiment_results(self.svc, experiment_id, project_ids=self.scope(), **query)
        return _json(rows), next_cursor

    def experiment_pair(self, experiment_id: str, request_id: str) -> Any:
        """``GET /experiments/{id}/results/{request_id}``."""
        return _json(core.experiment_pair(self.svc, experiment_id, request_id, project_ids=self.scope()))

    def experiment_histogram(self, experiment_id: str, *, threshold: float = 0.85) -> Any:
        """``GET /experiments/{id}/similarity-histogram``."""
        return _json(core.experiment_histogram(self.svc, experiment_id, threshold=threshold, project_ids=self.scope()))

    def cancel_experiment(self, experiment_id: str) -> Any:
        """``POST /experiments/{id}/cancel``."""
        return _json(core.cancel_experiment(self.svc, experiment_id, project_ids=self.scope()))

    def promote_experiment(self, experiment_id: str) -> Any:
        """``POST /experiments/{id}/promote``."""
        experiment, version = core.promote_experiment(self.svc, experiment_id, project_ids=self.scope())
        return _json({"experiment": experiment, "routing_config": version})

    # judge runs
    def _judge_run(self, experiment_id: str, run_id: str, scope: list[str] | None) -> JudgeRun:
        return core.get_judge_run(self.svc, run_id, project_ids=scope, experiment_id=experiment_id)

    def preflight_judge(self, experiment_id: str, body: Any) -> Any:
        """``POST /experiments/{id}/judge/preflight``."""
        return _json(core.preflight_judge(self.svc, experiment_id, body, project_ids=self.scope()))

    def create_judge_run(self, experiment_id: str, body: Any) -> Any:
        """``POST /experiments/{id}/judge``."""
        launcher = self.launcher()
        return _json(core.submit_judge_run(self.svc, experiment_id, body, launcher, project_ids=self.scope()))

    def list_judge_runs(self, experiment_id: str, *, limit: int = 20, cursor: str | None = None) -> Page:
        """``GET /experiments/{id}/judge``."""
        runs, next_cursor = core.list_judge_runs(
            self.svc, experiment_id, project_ids=self.scope(), limit=limit, cursor=cursor
        )
        return _json(runs), next_cursor

    def get_judge_run(self, experiment_id: str, run_id: str) -> Any:
        """``GET /experiments/{id}/judge/{run_id}``."""
        return _json(self._judge_run(experiment_id, run_id, self.scope()))

    def judge_results(self, experiment_id: str, run_id: str, **query: Any) -> Page:
        """``GET /experiments/{id}/judge/{run_id}/results``."""
        scope = self.scope()
        run = self._judge_run(experiment_id, run_id, scope)
        rows, next_cursor = core.judge_results(self.svc, run.id, project_ids=scope, **query)
        return _json(rows), next_cursor

    def cancel_judge_run(self, experiment_id: str, run_id: str) -> Any:
        """``POST /experiments/{id}/judge/{run_id}/cancel``."""
        scope = self.scope()
        run = self._judge_run(experiment_id, run_id, scope)
        return _json(core.cancel_judge_run(self.svc, run.id, project_ids=scope))

    # scheduled experiments
    def create_schedule(self, body: Any) -> Any:
        """``POST /scheduled_experiments``."""
        return _json(schedules.create_schedule(self.svc, body, self.scheduler(), project_ids=self.scope()))

    def list_schedules(self, *, project_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """``GET /scheduled_experiments``."""
        found = schedules.list_schedules(
            self.svc, self.scheduler(), project_ids=self.scope(), project_id=project_id, status=status
        )
        return list(_json(found))

    def get_schedule(self, schedule_id: str) -> Any:
        """``GET /scheduled_experiments/{id}``."""
        return _json(schedules.get_schedule(self.svc, schedule_id, self.scheduler(), project_ids=self.scope()))

    def update_schedule(self, schedule_id: str, body: Any) -> Any:
        """``PATCH /scheduled_experiments/{id}``."""
        scheduler = self.scheduler()
        return _json(schedules.update_schedule(self.svc, schedule_id, body, scheduler, project_ids=self.scope()))

    def delete_schedule(self, schedule_id: str) -> Any:
        """``DELETE /scheduled_experiments/{id}``."""
        return _json(schedules.delete_schedule(self.svc, schedule_id, self.scheduler(), project_ids=self.scope()))

    def schedule_action(self, schedule_id: str, action: str) -> Any:
        """``POST /scheduled_experiments/{id}/pause|resume|run_now``."""
        call = {
            "pause": schedules.pause_schedule,
            "resume": schedules.resume_schedule,
            "run_now": schedules.run_schedule_now,
        }[action]
        return _json(call(self.svc, schedule_id, self.scheduler(), project_ids=self.scope()))

    def schedule_runs(self, schedule_id: str) -> list[dict[str, Any]]:
        """``GET /scheduled_experiments/{id}/runs``."""
        return list(_json(schedules.schedule_runs(self.svc, schedule_id, project_ids=self.scope())))

    # signals and webhooks
    def list_signals(self, *, project_id: str | None = None, state: str = "open") -> list[dict[str, Any]]:
        """``GET /signals``."""
        return list(
            _json(schedules.list_signals(self.svc, project_ids=self.scope(), project_id=project_id, state=state))
        )

    def signal_action(self, key: str, action: str, body: Any = None) -> Any:
        """``POST /signals/{key}/dismiss|snooze``."""
        if action == "dismiss":
            return _json(schedules.dismiss_signal(self.svc, key, project_ids=self.scope()))
        return _json(schedules.snooze_signal(self.svc, key, body, project_ids=self.scope()))

    def create_webhook(self, body: Any) -> Any:
        """``POST /webhooks``."""
        return _json(schedules.create_webhook(self.svc, body, project_ids=self.scope()))

    def list_webhooks(self, *, project_id: str | None = None) -> list[dict[str, Any]]:
        """``GET /webhooks``."""
        return list(_json(schedules.list_webhooks(self.svc, project_ids=self.scope(), project_id=project_id)))

    def delete_webhook(self, webhook_id: str) -> Any:
        """``DELETE /webhooks/{id}``."""
        return _json(schedules.delete_webhook(self.svc, webhook_id, project_ids=self.scope()))

    def list_deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        """``GET /webhooks/{id}/deliveries``."""
        return list(_json(schedules.list_deliveries(self.svc, webhook_id, project_ids=self.scope())))

    def replay_delivery(self, webhook_id: str, delivery_id: str) -> Any:
        """``POST /webhooks/{id}/deliveries/{delivery_id}/replay``."""
        return _json(schedules.replay_delivery(self.svc, webhook_id, delivery_id, project_ids=self.scope()))


def _need_prefect(svc: core.Services) -> None:
    if discover_prefect_api(svc.settings.home) is None:
        raise ConfigError(NO_PREFECT, param="PREFECT_API_URL")


def _json(obj: Any) -> Any:
    """``obj`` as the REST API writes it (models by their aliases, datetimes as ISO strings)."""
    return to_jsonable_python(obj)
