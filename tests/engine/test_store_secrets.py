"""The store's secrets at rest (provider API keys, webhook secrets), its file modes and dashboard sessions."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from engine.crypto import KEY_ENV, TAG, SecretCipher, generate_key
from engine.errors import SecretKeyError
from engine.schema import ProviderCredential
from engine.store import Store, utcnow

API_KEY = "sk-canary-provider-0123456789"
HOOK_SECRET = "whsec_canary_0123456789abcdef"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def credential(credential_id: str = "pc_1", project: str = "p") -> ProviderCredential:
    return ProviderCredential(
        id=credential_id,
        project_id=project,
        vendor="openai",
        base_url="http://x/v1",
        has_api_key=True,
        created_at=utcnow(),
    )


def raw_rows(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT secret FROM provider_credentials UNION ALL SELECT secret FROM webhooks").fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows if r[0] is not None]


def file_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


def with_secrets(store: Store) -> None:
    store.put_credential(credential(), API_KEY)
    store.put_credential(credential("pc_keyless"), None)
    store.put_doc("webhooks", "wh_1", "p", '{"id": "wh_1"}', secret=HOOK_SECRET)


def test_the_database_file_holds_no_plaintext_secret(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = Store(db, SecretCipher.from_keys(generate_key()))
    with_secrets(store)
    assert all(value.startswith(TAG) for value in raw_rows(db))
    content = file_bytes(db)
    assert API_KEY.encode() not in content and HOOK_SECRET.encode() not in content
    assert dict((c.id, s) for c, s in store.credential_secrets("p")) == {"pc_1": API_KEY, "pc_keyless": None}
    assert store.webhook_secret("wh_1") == HOOK_SECRET


def test_the_default_cipher_uses_a_key_file_beside_the_database(tmp_path: Path) -> None:
    db = tmp_path / "home" / "r.db"
    with_secrets(Store(db))
    assert mode(db.parent / "secret.key") == 0o600
    assert Store(db).webhook_secret("wh_1") == HOOK_SECRET  # a second process finds the same key
    assert HOOK_SECRET.encode() not in file_bytes(db)


def test_the_state_directory_and_sqlite_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "home" / "rehearsal.db"
    store = Store(db)
    assert mode(db.parent) == 0o700 and mode(db) == 0o600
    reader = sqlite3.connect(db)  # while a connection is open, WAL keeps its -wal and -shm files
    try:
        store.put_doc("webhooks", "wh_1", "p", "{}", secret=HOOK_SECRET)
        reader.execute("SELECT count(*) FROM webhooks").fetchone()
        for suffix in ("-wal", "-shm"):
            assert mode(db.with_name(db.name + suffix)) == 0o600, suffix
    finally:
        reader.close()


def test_an_existing_world_readable_store_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "old"
    home.mkdir()
    db = home / "rehearsal.db"
    sqlite3.connect(db).close()
    home.chmod(0o755)
    db.chmod(0o644)
    Store(db)
    assert mode(home) == 0o700 and mode(db) == 0o600


def test_legacy_plaintext_reads_and_rotation_encrypts_it(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    old = generate_key()
    store = Store(db, SecretCipher.from_keys(old))
    with_secrets(store)
    conn = sqlite3.connect(db)  # a row written before secrets were encrypted
    with conn:
        conn.execute("UPDATE webhooks SET secret = ? WHERE id = 'wh_1'", (HOOK_SECRET,))
    conn.close()
    assert store.webhook_secret("wh_1") == HOOK_SECRET

    new = generate_key()
    counts = Store(db, SecretCipher.from_keys(f"{new},{old}")).rotate_secrets()
    assert counts == {"provider_credentials": 1, "webhooks": 1, "plaintext": 1}
    assert all(value.startswith(TAG) for value in raw_rows(db))
    assert HOOK_SECRET.encode() not in file_bytes(db)
    after = Store(db, SecretCipher.from_keys(new))  # the old key is dropped: everything still reads
    assert after.webhook_secret("wh_1") == HOOK_SECRET
    assert dict((c.id, s) for c, s in after.credential_secrets("p"))["pc_1"] == API_KEY
    with pytest.raises(SecretKeyError, match=KEY_ENV):
        Store(db, SecretCipher.from_keys(old)).webhook_secret("wh_1")


def test_a_wrong_key_fails_clearly_and_rotation_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with_secrets(Store(db, SecretCipher.from_keys(generate_key())))
    before = raw_rows(db)
    wrong = Store(db, SecretCipher.from_keys(generate_key()))
    with pytest.raises(SecretKeyError) as caught:
        wrong.credential_secrets("p")
    assert caught.value.param == KEY_ENV and "'pc_1'" in caught.value.message
    assert API_KEY not in caught.value.message
    with pytest.raises(SecretKeyError, match="signing secret of webhook 'wh_1'"):
        wrong.webhook_secret("wh_1")
    with pytest.raises(SecretKeyError):
        wrong.rotate_secrets()
    assert raw_rows(db) == before  # one transaction: nothing half-rotated


def test_a_session_keeps_only_its_hash_and_ends_on_sign_out_or_revocation(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = Store(db)
    key = store.create_api_key(["p"])
    session_id = store.create_session(key.id, 3600)
    assert session_id != key.key and key.key not in session_id
    found = store.session_key(session_id)
    assert found is not None and found.id == key.id
    conn = sqlite3.connect(db)
    stored = conn.execute("SELECT id_hash, key_id FROM sessions").fetchall()
    conn.close()
    assert len(stored) == 1 and stored[0][1] == key.id and session_id not in stored[0][0]
    assert store.session_key("rhs_unknown") is None

    store.delete_session(session_id)
    assert store.session_key(session_id) is None  # replaying a signed-out session signs no one in

    again = store.create_session(key.id, 3600)
    store.revoke_api_key(key.id)
    assert store.session_key(again) is None


def test_an_expired_session_is_dead_and_swept(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = Store(db)
    key = store.create_api_key(["p"])
    expired = store.create_session(key.id, -1)
    assert store.session_key(expired) is None
    live = store.create_session(key.id, 3600)  # opening a session sweeps the expired ones
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
    conn.close()
    assert store.session_key(live) is not None
