"""``rehearsal mcp``: the MCP server over stdio. The MCP SDK loads only when the command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.client import KEY_ENV

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="REHEARSAL_SERVER",
        show_envvar=True,
        help=f"Call the REST API of this `rehearsal serve` instead of the local store (key from ${KEY_ENV}).",
    ),
]
LogsOption = Annotated[
    str | None, typer.Option("--logs", help="Log-store root (default $REHEARSAL_LOGS); the same as `serve`'s.")
]
PricingOption = Annotated[
    Path | None, typer.Option("--pricing", help="Pricing catalog (default $REHEARSAL_PRICING); the same as `serve`'s.")
]


def mcp(server: ServerOption = None, logs: LogsOption = None, pricing: PricingOption = None) -> None:
    """Serve the experiment, judge and schedule tools to an MCP client over stdio (key from $REHEARSAL_API_KEY)."""
    from service.mcp_server import run_stdio

    run_stdio(server, logs, pricing)
