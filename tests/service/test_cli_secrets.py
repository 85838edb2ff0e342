"""``rehearsal secrets``: a new key, and rotation of the stored secrets onto it (as a subprocess)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.crypto import KEY_ENV, SecretCipher
from engine.schema import ProviderCredential
from engine.store import Store, utcnow

API_KEY = "sk-canary-cli-0123456789"
HOOK_SECRET = "whsec_canary_cli_0123456789"


def rehearsal(home: Path, *args: str, key: str | None = None, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {"REHEARSAL_HOME": str(home), "PATH": "/usr/bin:/bin"} | ({KEY_ENV: key} if key is not None else {})
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == expect, proc.stderr
    return proc


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    home = tmp_path_factory.mktemp("keys")
    made = [rehearsal(home, "secrets", "new-key").stdout.strip() for _ in range(2)]
    assert made[0] != made[1] and all(len(k) == 44 for k in made)
    assert not list(home.iterdir())  # nothing stored
    return made[0], made[1]


def seeded(home: Path, key: str) -> Store:
    store = Store(home / "rehearsal.db", SecretCipher.from_keys(key))
    credential = ProviderCredential(
        id="pc_1", project_id="p", vendor="openai", base_url="http://x/v1", has_api_key=True, created_at=utcnow()
    )
    store.put_credential(credential, API_KEY)
    store.put_doc("webhooks", "wh_1", "p", '{"id": "wh_1"}', secret=HOOK_SECRET)
    conn = sqlite3.connect(home / "rehearsal.db")  # and one written before secrets were encrypted
    with conn:
        conn.execute("INSERT INTO webhooks (id, project_id, secret, body) VALUES ('wh_old', 'p', 'whsec_old', '{}')")
    conn.close()
    return store


def test_rotate_moves_every_secret_to_the_first_key(tmp_path: Path, keys: tuple[str, str]) -> None:
    old, new = keys
    seeded(tmp_path, old)
    proc = rehearsal(tmp_path, "secrets", "rotate", "--json", key=f"{new},{old}")
    assert json.loads(proc.stdout) == {
        "provider_credentials": 1,
        "webhooks": 2,
        "plaintext": 1,
        "key_source": KEY_ENV,
    }
    after = Store(tmp_path / "rehearsal.db", SecretCipher.from_keys(new))  # the old key is dropped
    assert after.webhook_secret("wh_1") == HOOK_SECRET and after.webhook_secret("wh_old") == "whsec_old"
    assert [s for _, s in after.credential_secrets("p")] == [API_KEY]
    human = rehearsal(tmp_path, "secrets", "rotate", key=new).stdout
    assert "1 provider API key and 2 webhook secrets" in human and "0 had been stored in plain text" in human


def test_a_wrong_or_malformed_key_is_one_line_naming_the_setting(tmp_path: Path, keys: tuple[str, str]) -> None:
    old, new = keys
    seeded(tmp_path, old)
    before = (tmp_path / "rehearsal.db").read_bytes()
    for key in (new, "not-a-key"):
        proc = rehearsal(tmp_path, "secrets", "rotate", key=key, expect=2)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"[{KEY_ENV}]" in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr and "cryptography" not in proc.stderr
        assert API_KEY not in proc.stderr + proc.stdout and key not in proc.stderr
    assert (tmp_path / "rehearsal.db").read_bytes() == before


def test_without_the_setting_rotation_encrypts_legacy_rows_with_the_key_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    conn = sqlite3.connect(home / "rehearsal.db")  # a store from before secrets were encrypted
    conn.executescript(
        "CREATE TABLE webhooks (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, secret TEXT NOT NULL, "
        "body TEXT NOT NULL); INSERT INTO webhooks VALUES ('wh_old', 'p', 'whsec_old', '{}');"
    )
    conn.close()
    proc = rehearsal(home, "secrets", "rotate")
    assert "with the key in" in proc.stdout and "secret.key" in proc.stdout and "1 had been" in proc.stdout
    assert b"whsec_old" not in (home / "rehearsal.db").read_bytes()
    key = (home / "secret.key").read_text().strip()
    assert Store(home / "rehearsal.db", SecretCipher.from_keys(key)).webhook_secret("wh_old") == "whsec_old"
