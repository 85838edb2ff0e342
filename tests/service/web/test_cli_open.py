"""``rehearsal experiment show ID --open``: the dashboard URL, opened in a browser only where there is a display."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def show_open(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "REHEARSAL_SERVER")
    }
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "experiment", "show", *args, "--open"],
        env=base | {"REHEARSAL_HOME": str(tmp_path / "home")} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_prints_the_url_of_the_local_server_by_default(tmp_path: Path) -> None:
    proc = show_open(tmp_path, "exp_123")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "http://127.0.0.1:8000/experiments/exp_123\n"


def test_the_server_comes_from_the_flag_or_the_environment(tmp_path: Path) -> None:
    flag = show_open(tmp_path, "exp_1", "--server", "https://rehearsal.example/")
    assert flag.stdout == "https://rehearsal.example/experiments/exp_1\n"
    env = show_open(tmp_path, "exp/2", REHEARSAL_SERVER="http://box:9000")
    assert env.stdout == "http://box:9000/experiments/exp%2F2\n"


def test_it_opens_a_browser_when_one_is_configured(tmp_path: Path) -> None:
    seen = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {seen}\n')
    browser.chmod(0o755)
    proc = show_open(tmp_path, "exp_9", BROWSER=str(browser))
    assert proc.returncode == 0, proc.stderr
    assert seen.read_text().strip() == proc.stdout.strip() == "http://127.0.0.1:8000/experiments/exp_9"


def test_it_does_not_combine_with_json(tmp_path: Path) -> None:
    proc = show_open(tmp_path, "exp_1", "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--open" in proc.stderr
