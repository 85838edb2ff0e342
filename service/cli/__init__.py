"""The ``rehearsal`` command line (typer + rich)."""

from __future__ import annotations

import sys
import traceback

import typer
from rich.text import Text

from engine.errors import ConfigError, Forbidden, NotFound, RehearsalError, Unauthorized
from service.cli import _experiments, _judge, _logs, _pricing, _projects
from service.cli._common import err, services
from service.cli._mcp import mcp
from service.cli._schedule import schedule_app, signals_app, webhooks_app
from service.cli._secrets import secrets_app
from service.cli._serve import keys_app, serve
from service.cli._sim import sim_provider

app = typer.Typer(
    name="rehearsal",
    help="Rehearse a routing change on real LLM traffic before production sees it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(_logs.app, name="logs")
app.add_typer(_projects.app, name="projects")
app.add_typer(_experiments.app, name="experiment")
app.add_typer(_judge.app, name="judge")
app.add_typer(_pricing.app, name="pricing")
app.command("sim-provider")(sim_provider)
app.add_typer(keys_app, name="keys")
app.add_typer(schedule_app, name="schedule")
app.add_typer(signals_app, name="signals")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(secrets_app, name="secrets")
app.command("serve")(serve)
app.command("mcp")(mcp)

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    _state["debug"] = debug


@app.command()
def demo() -> None:
    """Generate a demo log store (if absent) and replay it against a few instructive candidates."""
    from service.demo import run_demo

    run_demo(services())


def main() -> None:
    """Entry point: run the app; errors become one line on stderr and an exit code (2 = bad input)."""
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except RehearsalError as exc:
        if _state["debug"] or "--debug" in sys.argv:
            traceback.print_exc()
        where = f" [{exc.param}]" if exc.param and not exc.message.startswith(exc.param) else ""
        err.print(Text.assemble((f"error{where}:", "red"), " ", exc.message), soft_wrap=True)
        sys.exit(2 if isinstance(exc, ConfigError | NotFound | Unauthorized | Forbidden) else 1)
    except Exception as exc:  # anything unexpected: one line unless --debug
        if _state["debug"] or "--debug" in sys.argv:
            traceback.print_exc()
        err.print(Text.assemble(("error:", "red"), f" {exc.__class__.__name__}: {exc}"), soft_wrap=True)
        sys.exit(1)
