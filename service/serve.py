"""``rehearsal serve``: the embedded deployment (API + Prefect server on loopback + a runner for the flows)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.core import Services

#: Telemetry off and offline, for this process and every process it starts.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, even by SIGKILL (Linux), so no server is orphaned."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class EmbeddedPrefect:
    """A Prefect server on loopback with its SQLite database under ``home``."""

    home: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base URL (its UI)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What ``PREFECT_API_URL`` should be."""
        return f"{self.url}/api"

    def start(self, timeout_s: float = 120) -> EmbeddedPrefect:
        """Start the server and wait until it answers its health check."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        # The UI asks /ui-settings where its API is; Prefect answers from these settings, not from --port.
        env = {**os.environ, **OFFLINE_ENV, "PREFECT_HOME": str(self.home), "PREFECT_UI_API_URL": self.api_url}
        env.pop("PREFECT_API_URL", None)
        log = (self.home / "server.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited at start; see {self.home / 'server.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"the Prefect server did not answer within {timeout_s:g} s; see {self.home / 'server.log'}")

    def stop(self) -> None:
        """Stop the server (and what it started)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def export_settings(svc: Services) -> None:
    """Put the resolved settings in the environment, so flow-run processes see the same store and inputs."""
    os.environ.update(OFFLINE_ENV)
    os.environ["REHEARSAL_HOME"] = str(svc.settings.home.resolve())
    os.environ["REHEARSAL_LOGS"] = svc.logs_root if "://" in svc.logs_root else str(Path(svc.logs_root).resolve())
    os.environ["REHEARSAL_PRICING"] = str(svc.pricing_path.resolve())
    os.environ["REHEARSAL_CREDENTIALS"] = str(svc.credentials_path.resolve())


@contextlib.contextmanager
def prefect_api(home: Path, port: int = 0) -> Iterator[tuple[str, EmbeddedPrefect | None]]:
    """The Prefect API to use: ``PREFECT_API_URL`` when set, else an embedded server (stopped on exit).

    ``port``: the embedded server's (0: any free one). It listens on loopback only.

    Call it before anything imports ``prefect``: Prefect reads its settings from the environment once.
    """
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured, None
        return
    server = EmbeddedPrefect(home / "prefect", port).start()
    os.environ["PREFECT_API_URL"] = server.api_url
    address = _address_file(home)
    address.write_text(server.api_url + "\n")
    try:
        yield server.api_url, server
    finally:
        address.unlink(missing_ok=True)
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def _address_file(home: Path) -> Path:
    return home / "prefect" / "api-url"


def discover_prefect_api(home: Path) -> str | None:
    """``PREFECT_API_URL``, or else the embedded Prefect server of a ``rehearsal serve`` running on this home.

    Sets ``PREFECT_API_URL`` when it finds one that answers; call it before anything imports ``prefect``.
    """
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        return configured
    try:
        url = _address_file(home).read_text().strip()
        healthy = httpx.get(f"{url}/health", timeout=2).status_code == 200
    except (OSError, httpx.HTTPError):
        return None
    if healthy:
        os.environ["PREFECT_API_URL"] = url
        return url
    return None
