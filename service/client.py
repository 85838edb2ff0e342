"""A small synchronous client of the REST API (``/manage/v1/…``), for the CLI's ``--server`` mode.

Answers come back as the plain ``data`` objects (dicts and lists; pages as
``(rows, next_cursor)``). An error answer is raised as the engine error class
of its ``type`` (message, ``param`` and ``code`` kept), so callers handle
remote and local failures the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from pydantic_core import to_jsonable_python

from engine import errors
from engine.errors import ConfigError, RehearsalError, Unavailable

#: The environment variable holding the management key.
KEY_ENV = "REHEARSAL_API_KEY"
#: Seconds between two polls of a run that has not ended.
POLL_S = 0.5
#: Seconds a wait tolerates an unreachable server (e.g. while it restarts) before it gives up.
UNREACHABLE_GRACE_S = 60.0
#: Statuses of a run that has not ended.
UNFINISHED = ("queued", "running")

Page = tuple[list[dict[str, Any]], str | None]
ProgressFn = Callable[[int, int, float], None]


def _error_classes() -> dict[str, type[RehearsalError]]:
    """Every engine error class by its ``error_type`` (the ``type`` of an error answer)."""
    found: dict[str, type[RehearsalError]] = {}
    pending: list[type[RehearsalError]] = [RehearsalError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.error_type, cls)
        pending.extend(cls.__subclasses__())
    return found


_BY_TYPE = _error_classes()
_BY_STATUS: dict[int, type[RehearsalError]] = {
    400: errors.ConfigError,
    401: errors.Unauthorized,
    402: errors.SpendCapReached,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    422: errors.ConfigError,
    502: errors.ProviderError,
    503: errors.Unavailable,
}


def error_from_response(response: httpx.Response) -> RehearsalError:
    """The engine error an error answer stands for."""
    try:
        detail = response.json()["error"]
        message, kind = str(detail["message"]), str(detail.get("type") or "")
        param, code = detail.get("param"), detail.get("code")
    except (ValueError, KeyError, TypeError):
        text = response.text.strip().replace("\n", " ")[:200]
        message, kind, param, code = f"the server answered HTTP {response.status_code}: {text}", "", None, None
    cls = _BY_TYPE.get(kind) or _BY_STATUS.get(response.status_code, RehearsalError)
    return cls(message, param=param, code=code)


def _seg(value: str) -> str:
    """One path segment, quoted."""
    return quote(value, safe="")


class RestClient:
    """One method per route of the experiments and judge APIs."""

    def __init__(self, base_url: str, key: str | None = None, *, timeout_s: float = 30.0) -> None:
        url = base_url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--server must be an http(s) URL, got {base_url!r}", param="--server")
        key = key if key is not None else os.environ.get(KEY_ENV, "")
        if not key.strip():
            raise ConfigError(
                f"{KEY_ENV} is not set: export a management key (rehearsal keys create --project ID) to use --server",
                param=KEY_ENV,
            )
        self.base_url = url
        self.timeout_s = timeout_s
        self._http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key.strip()}"}, timeout=timeout_s)

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # plumbing -------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            response = self._http.request(
                method,
                path,
                json=None if body is None else to_jsonable_python(body),
                params=query,
                headers=headers,
            )
        except httpx.TimeoutException:
            raise Unavailable(
                f"the rehearsal server at {self.base_url} did not answer within {self.timeout_s:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the rehearsal server at {self.base_url}: {exc}") from None
        if response.is_error:
            raise error_from_response(response)
        try:
            answer = response.json()
        except ValueError:
            raise RehearsalError(
                f"the server at {self.base_url} answered {method} {path} with something other than JSON"
            ) from None
        if not isinstance(answer, dict) or "data" not in answer:
            raise RehearsalError(f"the server at {self.base_url} answered {method} {path} without a 'data' field")
        return answer

    def _data(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs)["data"]

    def _page(self, path: str, params: dict[str, Any]) -> Page:
        answer = self._request("GET", path, params=params)
        return list(answer["data"]), answer.get("next_cursor")

    @staticmethod
    def _exp(experiment_id: str) -> str:
        return f"/manage/v1/experiments/{_seg(experiment_id)}"

    def _judge(self, experiment_id: str, run_id: str | None = None) -> str:
        path = f"{self._exp(experiment_id)}/judge"
        return path if run_id is None else f"{path}/{_seg(run_id)}"

    # experiments ---------------------------------------------------------------
    def create_experiment(self, body: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /manage/v1/experiments``: the queued experiment."""
        return self._data("POST", "/manage/v1/experiments", body=body, idempotency_key=idempotency_key)

    def preflight_experiment(self, body: Any) -> dict[str, Any]:
        """``POST /manage/v1/experiments/preflight``."""
        return self._data("POST", "/manage/v1/experiments/preflight", body=body)

    def list_experiments(
        self,
        *,
        project_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """``GET /manage/v1/experiments``: a page, newest first."""
        params = {"projectId": project_id, "status": status, "limit": limit, "cursor": cursor}
        return self._page("/manage/v1/experiments", params)

    def get_logged_request(self, request_id: str, *, project_id: str | None = None) -> dict[str, Any]:
        """``GET /manage/v1/logs/{request_id}``."""
        params = {"projectId": project_id} if project_id else None
        return dict(self._data("GET", f"/manage/v1/logs/{_seg(request_id)}", params=params))

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """``GET /manage/v1/experiments/{id}``."""
        return self._data("GET", self._exp(experiment_id))

    def experiment_results(
        self,
        experiment_id: str,
        *,
        sort: str | None = None,
        candidate_status: str | None = None,
        min_similarity: float | None = None,
        max_similarity: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """``GET …/{id}/results``: a page of per-pair rows."""
        params = {
            "sort": sort,
            "candidate_status": candidate_status,
            "min_similarity": min_similarity,
            "max_similarity": max_similarity,
            "limit": limit,
            "cursor": cursor,
        }
        return self._page(f"{self._exp(experiment_id)}/results", params)

    def experiment_pair(self, experiment_id: str, request_id: str) -> dict[str, Any]:
        """``GET …/{id}/results/{request_id}``: one pair with both answers."""
        return self._data("GET", f"{self._exp(experiment_id)}/results/{_seg(request_id)}")

    def experiment_histogram(self, experiment_id: str, *, threshold: float | None = None) -> dict[str, Any]:
        """``GET …/{id}/similarity-histogram``."""
        path = f"{self._exp(experiment_id)}/similarity-histogram"
        return self._data("GET", path, params={"threshold": threshold})

    def cancel_experiment(self, experiment_id: str) -> dict[str, Any]:
        """``POST …/{id}/cancel``."""
        return self._data("POST", f"{self._exp(experiment_id)}/cancel")

    def promote_experiment(self, experiment_id: str) -> dict[str, Any]:
        """``POST …/{id}/promote``: ``{"experiment", "routing_config"}``."""
        return self._data("POST", f"{self._exp(experiment_id)}/promote")

    def wait_experiment(
        self, experiment_id: str, on_progress: ProgressFn | None = None, *, poll_s: float = POLL_S
    ) -> dict[str, Any]:
        """Poll the experiment until it has ended; returns it."""
        return _wait(lambda: self.get_experiment(experiment_id), on_progress, poll_s)

    # judge runs ------------------------------------------------------------------
    def preflight_judge(self, experiment_id: str, body: Any) -> dict[str, Any]:
        """``POST …/{id}/judge/preflight``."""
        return self._data("POST", f"{self._judge(experiment_id)}/preflight", body=body)

    def create_judge_run(self, experiment_id: str, body: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST …/{id}/judge``: the queued judge run."""
        path = self._judge(experiment_id)
        return self._data("POST", path, body=body, idempotency_key=idempotency_key)

    def list_judge_runs(self, experiment_id: str, *, limit: int | None = None, cursor: str | None = None) -> Page:
        """``GET …/{id}/judge``: a page of judge runs, newest first."""
        return self._page(self._judge(experiment_id), {"limit": limit, "cursor": cursor})

    def get_judge_run(self, experiment_id: str, run_id: str) -> dict[str, Any]:
        """``GET …/{id}/judge/{run_id}``."""
        return self._data("GET", self._judge(experiment_id, run_id))

    def judge_results(
        self,
        experiment_id: str,
        run_id: str,
        *,
        verdict: str | None = None,
        bucket: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """``GET …/{id}/judge/{run_id}/results``: a page of verdicts, worst first."""
        params = {"verdict": verdict, "bucket": bucket, "limit": limit, "cursor": cursor}
        return self._page(f"{self._judge(experiment_id, run_id)}/results", params)

    def cancel_judge_run(self, experiment_id: str, run_id: str) -> dict[str, Any]:
        """``POST …/{id}/judge/{run_id}/cancel``."""
        return self._data("POST", f"{self._judge(experiment_id, run_id)}/cancel")

    def wait_judge_run(
        self, experiment_id: str, run_id: str, on_progress: ProgressFn | None = None, *, poll_s: float = POLL_S
    ) -> dict[str, Any]:
        """Poll the judge run until it has ended; returns it."""
        return _wait(lambda: self.get_judge_run(experiment_id, run_id), on_progress, poll_s)

    # scheduled experiments, signals, webhooks -------------------------------------------
    _SCHED = "/manage/v1/scheduled_experiments"

    def create_schedule(self, body: Any) -> dict[str, Any]:
        """``POST /manage/v1/scheduled_experiments``."""
        return dict(self._data("POST", self._SCHED, body=body))

    def list_schedules(self, *, project_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """``GET /manage/v1/scheduled_experiments``."""
        return self._page(self._SCHED, {"projectId": project_id, "status": status})[0]

    def get_schedule(self, schedule_id: str) -> dict[str, Any]:
        """``GET …/{id}``."""
        return dict(self._data("GET", f"{self._SCHED}/{_seg(schedule_id)}"))

    def update_schedule(self, schedule_id: str, body: Any) -> dict[str, Any]:
        """``PATCH …/{id}``."""
        return dict(self._data("PATCH", f"{self._SCHED}/{_seg(schedule_id)}", body=body))

    def delete_schedule(self, schedule_id: str) -> dict[str, Any]:
        """``DELETE …/{id}``."""
        return dict(self._data("DELETE", f"{self._SCHED}/{_seg(schedule_id)}"))

    def schedule_action(self, schedule_id: str, action: str) -> dict[str, Any]:
        """``POST …/{id}/pause|resume|run_now``."""
        return dict(self._data("POST", f"{self._SCHED}/{_seg(schedule_id)}/{action}"))

    def schedule_runs(self, schedule_id: str) -> list[dict[str, Any]]:
        """``GET …/{id}/runs``."""
        return self._page(f"{self._SCHED}/{_seg(schedule_id)}/runs", {})[0]

    def list_signals(self, *, project_id: str | None = None, state: str = "open") -> list[dict[str, Any]]:
        """``GET /manage/v1/signals``."""
        return self._page("/manage/v1/signals", {"projectId": project_id, "state": state})[0]

    def signal_action(self, key: str, action: str, body: Any = None) -> dict[str, Any]:
        """``POST /manage/v1/signals/{key}/dismiss|snooze``."""
        return dict(self._data("POST", f"/manage/v1/signals/{_seg(key)}/{action}", body=body))

    def create_webhook(self, body: Any) -> dict[str, Any]:
        """``POST /manage/v1/webhooks`` (the answer holds the secret, once)."""
        return dict(self._data("POST", "/manage/v1/webhooks", body=body))

    def list_webhooks(self, *, project_id: str | None = None) -> list[dict[str, Any]]:
        """``GET /manage/v1/webhooks``."""
        return self._page("/manage/v1/webhooks", {"projectId": project_id})[0]

    def delete_webhook(self, webhook_id: str) -> dict[str, Any]:
        """``DELETE /manage/v1/webhooks/{id}``."""
        return dict(self._data("DELETE", f"/manage/v1/webhooks/{_seg(webhook_id)}"))

    def list_deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        """``GET /manage/v1/webhooks/{id}/deliveries``."""
        return self._page(f"/manage/v1/webhooks/{_seg(webhook_id)}/deliveries", {})[0]

    def replay_delivery(self, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        """``POST /manage/v1/webhooks/{id}/deliveries/{delivery_id}/replay``."""
        path = f"/manage/v1/webhooks/{_seg(webhook_id)}/deliveries/{_seg(delivery_id)}/replay"
        return dict(self._data("POST", path))


def _wait(fetch: Callable[[], dict[str, Any]], on_progress: ProgressFn | None, poll_s: float) -> dict[str, Any]:
    """Fetch a run until its status has ended, reporting its progress and spend after each fetch.

    The server may restart under a long wait (its runs survive that): it may be
    unreachable for up to ``UNREACHABLE_GRACE_S`` before the wait gives up.
    """
    unreachable_since: float | None = None
    while True:
        try:
            run = fetch()
        except Unavailable:
            now = time.monotonic()
            unreachable_since = unreachable_since or now
            if now - unreachable_since > UNREACHABLE_GRACE_S:
                raise
            time.sleep(poll_s)
            continue
        unreachable_since = None
        progress = run.get("progress") or {}
        if on_progress is not None and progress.get("total"):
            on_progress(int(progress.get("done", 0)), int(progress["total"]), float(run.get("spend_usd") or 0.0))
        if run.get("status") not in UNFINISHED:
            return run
        time.sleep(poll_s)
