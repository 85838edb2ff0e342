"""The dashboard's routes: server-rendered pages over the shared service layer.

Pages call ``service.core`` and ``service.schedules`` with the signed-in key's
project scope, exactly like the REST API. Buttons post forms to routes here that call the same service functions as the
API; a missing, ended or revoked sign-in is sent to ``/login``; an object outside the key's
projects is a 404 page.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from engine.errors import ConfigError, NotFound, RehearsalError
from engine.responses import USAGE_NOTE_PREFIX
from engine.schema import Experiment, JudgeRun
from engine.store import utcnow
from service import core, schedules
from service.api._deps import Schedule, Svc
from service.web import _views as views
from service.web._auth import (
    BadForm,
    FormDep,
    Session,
    SessionDep,
    SignInRequired,
    clear_session_cookie,
    current_session,
    local_path,
    open_session,
    read_form,
    same_origin,
    set_session_cookie,
)

log = logging.getLogger("rehearsal.web")

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
#: Experiments per page of the list.
PAGE_SIZE = 25
#: Worst pairs (and worst verdicts) shown with a diff drawer.
WORST = 10
#: Past runs of a schedule drawn in its sparklines.
SCHEDULE_RUNS = 30
#: Snooze lengths the signal buttons offer, in hours.
SNOOZE_HOURS = (1, 24, 168)
ACTIVE = ("queued", "running")
#: No inline script or style anywhere: everything comes from /static (SVG uses presentation attributes).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _breakable(name: str) -> Markup:
    """A snake_case name that may wrap after its underscores (long metric names on phones)."""
    return Markup("_<wbr>").join(escape(part) for part in str(name).split("_"))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        usd=views.usd,
        signed_usd=views.signed_usd,
        pct=views.pct,
        share=views.share,
        ms=views.ms,
        when=views.when,
        relative=views.relative,
        tone=views.tone,
        interval_pct=views.interval_pct,
        whisker=views.whisker,
        verdict_detail=views.verdict_detail,
        urlpart=lambda value: quote(str(value), safe=""),
        breakable=_breakable,
    )
    return env


templates = Jinja2Templates(env=_environment())


class _PageRoute(APIRoute):
    """Dashboard answers: HTML error pages (JSON for ``*.json``), sign-in redirects and security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler; errors become pages here rather than the API's JSON envelope."""
        handler = super().get_route_handler()
        wants_json = self.path.endswith(".json")

        async def page(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired as exc:
                response = _signed_out(request, exc, wants_json)
            except BadForm as exc:
                response = _error(request, 403, "Not sent from this dashboard", str(exc), wants_json)
            except RehearsalError as exc:
                title = _titles.get(exc.status_code, "Error")
                response = _error(request, exc.status_code, title, exc.message, wants_json)
            except RequestValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
                response = _error(request, 400, "Bad request", f"{where}: {first.get('msg')}", wants_json)
            except Exception:
                log.exception("dashboard error on %s %s", request.method, request.url.path)
                message = "The server log has the details."
                response = _error(request, 500, "Something went wrong", message, wants_json)
            response.headers.update(SECURITY_HEADERS)
            return response

        return page


_titles = {400: "Bad request", 401: "Sign in", 403: "Not allowed", 404: "Not found", 409: "Not possible now"}
router = APIRouter(route_class=_PageRoute, include_in_schema=False)


# --------------------------------------------------------------------------- rendering
def _render(
    request: Request, name: str, session: Session | None, *, status_code: int = 200, **context: Any
) -> Response:
    base = str(request.scope.get("root_path", "")).rstrip("/")
    context = {"base": base, "session": session, "nav": "", "flash": None, "now": utcnow()} | context
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _error(request: Request, status: int, title: str, message: str, wants_json: bool) -> Response:
    if wants_json:
        return JSONResponse({"error": {"message": message, "status": status}}, status_code=status)
    return _render(request, "error.html", None, status_code=status, title=title, message=message)


def _signed_out(request: Request, exc: SignInRequired, wants_json: bool) -> Response:
    if wants_json:
        response: Response = JSONResponse({"error": {"message": "sign in first", "status": 401}}, status_code=401)
    else:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        base = str(request.scope.get("root_path", "")).rstrip("/")
        response = RedirectResponse(f"{base}/login?next={quote(target, safe='/')}", status_code=303)
    if exc.had_cookie:
        clear_session_cookie(response, request)
    return response


def _back(request: Request, target: str) -> RedirectResponse:
    base = str(request.scope.get("root_path", "")).rstrip("/")
    return RedirectResponse(base + local_path(target), status_code=303)


# --------------------------------------------------------------------------- sign-in
@router.get("/login")
def login_page(request: Request, svc: Svc, next: str = "/") -> Response:
    """The sign-in form (a signed-in visitor goes straight on)."""
    if current_session(request, svc.store) is not None:
        return _back(request, next)
    return _render(request, "login.html", None, next=local_path(next), error=None)


def _sign_in(request: Request, svc: Svc, raw: str) -> str | None:
    """Check the key (``store.authenticate``, as the API does) and open a session; ``None`` for a bad key."""
    key = svc.store.authenticate(raw)
    if key is None:
        return None
    previous = current_session(request, svc.store)
    if previous is not None:  # signing in again replaces the browser's session rather than leaving it alive
        svc.store.delete_session(previous.id)
    return open_session(svc.store, key)


@router.post("/login")
async def login(request: Request, svc: Svc) -> Response:
    """Check the key and keep a new session's id (never the key) in the cookie."""
    if not same_origin(request):
        raise BadForm("the form was not sent from this site")
    form = await read_form(request)
    raw = form.get("key", "").strip()
    target = local_path(form.get("next"))
    session_id = await run_in_threadpool(_sign_in, request, svc, raw) if raw else None
    if session_id is None:
        error = "Enter a management key." if not raw else "That key is not valid (or was revoked)."
        return _render(request, "login.html", None, status_code=401, next=target, error=error)
    response = _back(request, target)
    set_session_cookie(response, request, session_id)
    return response


@router.post("/logout")
def logout(request: Request, svc: Svc, session: SessionDep, form: FormDep) -> Response:
    """End the session in the store (a replayed cookie signs no one in) and forget it in the browser."""
    svc.store.delete_session(session.id)
    response = _back(request, "/login")
    clear_session_cookie(response, request)
    return response


# --------------------------------------------------------------------------- experiments
@router.get("/")
def experiments_page(
    request: Request,
    svc: Svc,
    session: SessionDep,
    project: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
) -> Response:
    """Experiments, newest first: status, mode, candidate, cost delta and agreement."""
    projects = core.list_projects(svc, project_ids=session.scope)
    items, next_cursor = core.list_experiments(
        svc,
        project_ids=session.scope,
        project_id=project or None,
        status=status or None,
        limit=PAGE_SIZE,
        cursor=cursor or None,
    )
    return _render(
        request,
        "experiments.html",
        session,
        nav="experiments",
        experiments=items,
        next_cursor=next_cursor,
        projects=projects,
        project=project or "",
        status=status or "",
        statuses=("queued", "running", "completed", "cancelled", "failed"),
    )


def _pair_view(row: dict[str, Any]) -> dict[str, Any]:
    return row | {"diff": views.word_diff(row.get("baseline_text"), row.get("candidate_text"))}


def _similarity(
    svc: core.Services, experiment: Experiment, threshold: float, scope: list[str] | None
) -> dict[str, Any]:
    hist = core.experiment_histogram(svc, experiment.id, threshold=threshold, project_ids=scope)
    worst, _ = core.experiment_results(
        svc, experiment.id, project_ids=scope, include_texts=True, sort="similarity_asc", limit=WORST
    )
    return {"histogram": hist, "chart": views.histogram_chart(hist), "worst": [_pair_view(r) for r in worst]}


@router.get("/experiments/{experiment_id}")
def experiment_page(
    request: Request,
    experiment_id: str,
    svc: Svc,
    session: SessionDep,
    threshold: Annotated[float, Query(ge=0, le=1)] = 0.85,
    promoted: str | None = None,
) -> Response:
    """One experiment: hypothesis, deltas, routes, similarity, worst pairs, judge runs and its actions."""
    experiment = core.get_experiment(svc, experiment_id, project_ids=session.scope)
    active = experiment.status in ACTIVE
    # Pairs are scored at the end of a run: until then the page shows its live progress instead.
    with_pairs = experiment.mode == "with_responses" and not active
    similarity = _similarity(svc, experiment, threshold, session.scope) if with_pairs else None
    judge_runs, _ = core.list_judge_runs(svc, experiment.id, project_ids=session.scope, limit=20)
    baseline, candidate = experiment.baseline_summary, experiment.candidate_summary
    production = None  # what Promote would replace, for its confirmation
    if experiment.status == "completed":
        try:
            production = core.get_routing_config(
                svc, experiment.project_id, core.PRODUCTION_SLUG, project_ids=session.scope
            )
        except NotFound:
            production = None
    flash = None
    if promoted is not None and experiment.promoted_version is not None:
        flash = f"Promoted: the candidate is now production version {experiment.promoted_version}."
    return _render(
        request,
        "experiment.html",
        session,
        nav="experiments",
        flash=flash,
        experiment=experiment,
        active=active,
        # The suspicious-usage note is a warning over the deltas, not one note among the others.
        usage_warnings=[n for n in experiment.notes if n.startswith(USAGE_NOTE_PREFIX)],
        notes=[n for n in experiment.notes if not n.startswith(USAGE_NOTE_PREFIX)],
        similarity=similarity,
        threshold=threshold,
        judge_runs=judge_runs,
        production=production,
        routes=views.route_rows(
            baseline.route_distribution if baseline else None, candidate.route_distribution if candidate else None
        ),
    )


@router.get("/experiments/{experiment_id}/pairs/{request_id}")
def pair_page(request: Request, experiment_id: str, request_id: str, svc: Svc, session: SessionDep) -> Response:
    """One pair side by side (what the drawer shows, as a page of its own)."""
    experiment = core.get_experiment(svc, experiment_id, project_ids=session.scope)
    pair = core.experiment_pair(svc, experiment.id, request_id, project_ids=session.scope)
    return _render(request, "pair.html", session, nav="experiments", experiment=experiment, pair=_pair_view(pair))


def _progress(run: Experiment | JudgeRun) -> dict[str, Any]:
    return {
        "status": run.status,
        "status_reason": run.status_reason,
        "done": run.progress.done,
        "total": run.progress.total,
        "spend_usd": run.spend_usd,
        "spend_cap_usd": run.spend_cap_usd,
    }


@router.get("/experiments/{experiment_id}/progress.json")
def experiment_progress(experiment_id: str, svc: Svc, session: SessionDep) -> dict[str, Any]:
    """Status, pairs done and spend, for the page's live progress bar."""
    return _progress(core.get_experiment(svc, experiment_id, project_ids=session.scope))


@router.post("/experiments/{experiment_id}/promote")
def promote(request: Request, experiment_id: str, svc: Svc, session: SessionDep, form: FormDep) -> Response:
    """Write the candidate as the project's next production routing-config version (``core.promote_experiment``)."""
    experiment, _ = core.promote_experiment(svc, experiment_id, project_ids=session.scope)
    return _back(request, f"/experiments/{quote(experiment.id)}?promoted=1")


@router.post("/experiments/{experiment_id}/cancel")
def cancel(request: Request, experiment_id: str, svc: Svc, session: SessionDep, form: FormDep) -> Response:
    """Stop a queued or running experiment (``core.cancel_experiment``)."""
    experiment = core.cancel_experiment(
        svc, experiment_id, project_ids=session.scope, launcher=request.app.state.launcher
    )
    return _back(request, f"/experiments/{quote(experiment.id)}")


# --------------------------------------------------------------------------- judge runs
def _judge_run(svc: core.Services, experiment_id: str, run_id: str, scope: list[str] | None) -> JudgeRun:
    return core.get_judge_run(svc, run_id, project_ids=scope, experiment_id=experiment_id)


@router.get("/experiments/{experiment_id}/judge/{run_id}")
def judge_page(request: Request, experiment_id: str, run_id: str, svc: Svc, session: SessionDep) -> Response:
    """A judge run: verdict breakdown with 95% intervals, by bucket, and the worst verdicts."""
    experiment = core.get_experiment(svc, experiment_id, project_ids=session.scope)
    run = _judge_run(svc, experiment.id, run_id, session.scope)
    worst: list[dict[str, Any]] = []
    if run.summary is not None:
        rows, _ = core.judge_results(svc, run.id, limit=WORST, project_ids=session.scope)
        # The pair's costs and latencies sit beside the verdict in the drawer.
        worst = [
            _pair_view(core.experiment_pair(svc, experiment.id, r["request_id"], project_ids=session.scope) | r)
            for r in rows
        ]
    return _render(
        request,
        "judge.html",
        session,
        nav="experiments",
        experiment=experiment,
        run=run,
        active=run.status in ACTIVE,
        ci=views.ci_rows(run.summary) if run.summary else [],
        worst=worst,
    )


@router.get("/experiments/{experiment_id}/judge/{run_id}/progress.json")
def judge_progress(experiment_id: str, run_id: str, svc: Svc, session: SessionDep) -> dict[str, Any]:
    """Status, pairs judged and spend, for the page's live progress bar."""
    return _progress(_judge_run(svc, experiment_id, run_id, session.scope))


@router.post("/experiments/{experiment_id}/judge/{run_id}/cancel")
def cancel_judge(
    request: Request, experiment_id: str, run_id: str, svc: Svc, session: SessionDep, form: FormDep
) -> Response:
    """Stop a queued or running judge run (``core.cancel_judge_run``)."""
    run = _judge_run(svc, experiment_id, run_id, session.scope)
    core.cancel_judge_run(svc, run.id, project_ids=session.scope, launcher=request.app.state.launcher)
    return _back(request, f"/experiments/{quote(experiment_id)}/judge/{quote(run.id)}")


# --------------------------------------------------------------------------- schedules and signals
@router.get("/schedules")
def schedules_page(request: Request, svc: Svc, scheduler: Schedule, session: SessionDep) -> Response:
    """Scheduled experiments with their last verdicts, and the open signals."""
    items = schedules.list_schedules(svc, scheduler, project_ids=session.scope)
    signals = schedules.list_signals(svc, project_ids=session.scope)
    return _render(
        request,
        "schedules.html",
        session,
        nav="schedules",
        schedules=items,
        signals=signals,
        names={s.id: s.name for s in items},
        snooze_hours=SNOOZE_HOURS,
    )


@router.get("/schedules/{schedule_id}")
def schedule_page(request: Request, schedule_id: str, svc: Svc, scheduler: Schedule, session: SessionDep) -> Response:
    """One schedule: cron, next run, criteria with sparklines over past runs, each run's verdict, its signals."""
    schedule = schedules.get_schedule(svc, schedule_id, scheduler, project_ids=session.scope)
    runs = schedules.schedule_runs(svc, schedule.id, project_ids=session.scope, limit=SCHEDULE_RUNS)
    history = views.criterion_history(
        [{"when": views.when(r.scheduled_for or r.created_at), "verdict": r.verdict} for r in runs]
    )
    signals = [
        s
        for s in schedules.list_signals(svc, project_ids=session.scope, project_id=schedule.project_id, state="all")
        if s.scheduled_experiment_id == schedule.id
    ]
    return _render(
        request,
        "schedule.html",
        session,
        nav="schedules",
        schedule=schedule,
        runs=runs,
        history=history,
        signals=signals,
        names={schedule.id: schedule.name},
        snooze_hours=SNOOZE_HOURS,
    )


@router.post("/signals/{signal_key}/dismiss")
def dismiss(request: Request, signal_key: str, svc: Svc, session: SessionDep, form: FormDep) -> Response:
    """Quiet a signal until a passing run resolves it (``schedules.dismiss_signal``)."""
    schedules.dismiss_signal(svc, signal_key, project_ids=session.scope)
    return _back(request, form.get("next", "/schedules"))


@router.post("/signals/{signal_key}/snooze")
def snooze(request: Request, signal_key: str, svc: Svc, session: SessionDep, form: FormDep) -> Response:
    """Quiet a signal for a while (``schedules.snooze_signal``)."""
    try:
        hours = int(form.get("hours", ""))
    except ValueError:
        hours = 0
    if hours not in SNOOZE_HOURS:
        raise ConfigError(f"hours must be one of {', '.join(map(str, SNOOZE_HOURS))}", param="hours")
    until = utcnow() + dt.timedelta(hours=hours)
    schedules.snooze_signal(svc, signal_key, {"until": until.isoformat()}, project_ids=session.scope)
    return _back(request, form.get("next", "/schedules"))
