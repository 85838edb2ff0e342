"""``rehearsal serve`` and ``rehearsal keys``."""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

from engine.errors import ConfigError
from service import core
from service.cli._common import JsonOpt, LogsOpt, PricingOpt, err, out, print_json, services

keys_app = typer.Typer(help="Management keys for the REST API.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    project: Annotated[
        list[str] | None, typer.Option("--project", help="A project the key may use (repeatable).")
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="May also change the projects' caps, keys and credentials.")
    ] = False,
    all_projects: Annotated[
        bool, typer.Option("--all-projects", help="An admin key for every project, which may create projects.")
    ] = False,
    name: Annotated[str, typer.Option("--name", help="A label to recognise the key by.")] = "",
    json_: JsonOpt = False,
) -> None:
    """Create a management key and print it once (only its hash is kept). Unseen projects are created.

    A key runs experiments, judge runs and schedules of its projects; ``--admin`` also manages their caps,
    keys and provider credentials.
    """
    if not project and not all_projects:
        raise ConfigError("give --project ID (repeatable) or --all-projects", param="project")
    svc = services()
    for project_id in project or []:
        core.ensure_project(svc, project_id)
    key = svc.store.create_api_key(
        project or [], all_projects=all_projects, name=name, role="admin" if admin else "member"
    )
    if json_:
        print_json(key)
        return
    scope = "every project" if all_projects else ", ".join(key.project_ids)
    err.print(f"Created {key.role} key {key.id} for {scope}. Store it now: it is not shown again.")
    out.print(key.key)


@keys_app.command("list")
def keys_list(json_: JsonOpt = False) -> None:
    """List keys (ids, prefixes and projects; never the secrets)."""
    keys = services().store.list_api_keys()
    if json_:
        print_json(keys)
        return
    for k in keys:
        scope = "all projects" if k.all_projects else ", ".join(k.project_ids)
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        out.print(f"{k.id}  {k.prefix}…  {k.role}  {scope}  {state}  {k.name}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, json_: JsonOpt = False) -> None:
    """Revoke a key for good, with every key minted from it."""
    key = services().store.revoke_api_key(key_id)
    if json_:
        print_json(key)
    else:
        out.print(f"revoked {key.id}")


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port of the API and dashboard.")] = 8000,
    prefect_port: Annotated[
        int,
        typer.Option(
            "--prefect-port",
            envvar="REHEARSAL_PREFECT_PORT",
            min=0,
            max=65535,
            help="Port of the embedded Prefect server and its UI, on loopback (0: any free port).",
        ),
    ] = 0,
    logs: LogsOpt = None,
    pricing: PricingOpt = None,
) -> None:
    """Serve the REST API, with a Prefect server on loopback (unless PREFECT_API_URL is set) and a flow runner."""
    from service.serve import export_settings, prefect_api

    svc = services(logs, pricing)
    export_settings(svc)
    # uvicorn re-raises the signal that stopped it once it has shut down; exit cleanly then, so the
    # runner and the embedded Prefect server are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if "prefect" in sys.modules:
        raise RuntimeError("prefect was imported before its API address was settled")
    with prefect_api(svc.settings.home, prefect_port) as (api_url, embedded):
        import uvicorn

        from flows.launch import PrefectLauncher, RunnerThread
        from flows.scheduling import PrefectScheduler
        from service.api import create_app

        err.print("starting the flow runner…")
        runner = RunnerThread(poll_seconds=0.5).start()
        try:
            launcher, scheduler = PrefectLauncher(), PrefectScheduler()
            for line in core.recover_runs(svc, launcher, scheduler, at_start=True):
                err.print(f"recovered {line}", soft_wrap=True)
            ui = embedded.url if embedded else api_url.removesuffix("/api")
            base = f"http://{host}:{port}"
            err.print(f"API        {base}/manage/v1  (key: rehearsal keys create --project ID)", soft_wrap=True)
            err.print(f"API docs   {base}/docs", soft_wrap=True)
            err.print(f"Dashboard  {base}/  (sign in with a management key)", soft_wrap=True)
            err.print(f"Prefect UI {ui}{'' if embedded else '  (external server)'}", soft_wrap=True)
            uvicorn.run(create_app(svc, launcher, scheduler), host=host, port=port, log_level="warning")
        finally:
            err.print("stopping the flow runner…")
            runner.stop()
