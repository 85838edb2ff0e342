"""``rehearsal sim-provider``: serve the simulated OpenAI-compatible provider on a local port."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from service.cli._common import err


def sim_provider(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0 = any free port).")
    ] = 8799,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on; keep it on loopback.")] = "127.0.0.1",
    config: Annotated[
        Path | None, typer.Option("--config", help="Simulator profiles (default configs/sim.yaml).")
    ] = None,
    call_log: Annotated[
        Path | None, typer.Option("--call-log", help="Append one JSON line per call received to this file.")
    ] = None,
) -> None:
    """Serve the rehearsal SIMULATOR: a fake OpenAI-compatible provider for tests and demos (Ctrl-C stops it)."""
    from engine.providers._sim import DEFAULT_SIM_CONFIG, SimServer, load_sim_config  # its web server, only here

    sim_config = load_sim_config(config or DEFAULT_SIM_CONFIG)
    with SimServer(sim_config, host=host, port=port, call_log=call_log) as server:
        err.print(
            "[bold yellow]rehearsal SIMULATOR[/] — not a real model provider: answers are rebuilt from the "
            "synthetic topic banks, latency and errors are simulated.",
            soft_wrap=True,
        )
        err.print(
            f"base URL: {server.base_url}   (OpenAI SDK: base_url={server.base_url!r}, any api_key)", soft_wrap=True
        )
        err.print(
            f"profiles: {', '.join(sorted(sim_config.models)) or '(default only)'}; "
            f"time_scale {sim_config.time_scale:g}" + (f"; call log: {call_log}" if call_log else ""),
            soft_wrap=True,
        )
        err.print("Ctrl-C to stop.", soft_wrap=True)
        try:
            # Short sleeps, not one long wait: Ctrl-C may land on the server's thread and only
            # reaches the main thread when it next wakes.
            while server.running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            err.print("simulator stopped", soft_wrap=True)
            return
    raise RuntimeError("the simulator server stopped unexpectedly")
