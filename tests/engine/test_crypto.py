"""The cipher of the store's secret columns, its key file and private file modes."""

from __future__ import annotations

import pickle
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

from engine.crypto import KEY_ENV, TAG, SecretCipher, generate_key, load_cipher, private_dir
from engine.errors import ConfigError, SecretKeyError
from engine.settings import Settings

SECRET = "sk-live-0123456789abcdef"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_secret_round_trips_tagged_and_unreadable() -> None:
    cipher = SecretCipher.from_keys(generate_key())
    stored = cipher.encrypt(SECRET)
    assert stored.startswith(TAG) and SECRET not in stored
    assert cipher.encrypt(SECRET) != stored  # a fresh IV each time
    assert cipher.decrypt(stored, "it") == SECRET
    assert cipher.decrypt(SECRET, "it") == SECRET  # legacy plaintext reads as it is


def test_a_wrong_key_is_a_clear_error_naming_the_setting() -> None:
    stored = SecretCipher.from_keys(generate_key()).encrypt(SECRET)
    with pytest.raises(SecretKeyError) as caught:
        SecretCipher.from_keys(generate_key()).decrypt(stored, "the API key of provider credential 'pc_1'")
    error = caught.value
    assert isinstance(error, ConfigError) and error.param == KEY_ENV and error.status_code == 500
    assert KEY_ENV in error.message and "'pc_1'" in error.message
    assert SECRET not in error.message and "InvalidToken" not in error.message
    assert error.__cause__ is None and error.__suppress_context__  # no cryptography internals in the chain
    assert pickle.loads(pickle.dumps(error)).message == error.message  # it may cross Ray


@pytest.mark.parametrize("value", ["", " , ", "not-a-key", f"{generate_key()},short"])
def test_a_malformed_key_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(SecretKeyError, match=KEY_ENV) as caught:
        SecretCipher.from_keys(value)
    assert "short" not in caught.value.message and "not-a-key" not in caught.value.message


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = generate_key(), generate_key()
    written = SecretCipher.from_keys(old).encrypt(SECRET)
    both = SecretCipher.from_keys(f"{new}, {old}")
    assert both.decrypt(written, "it") == SECRET
    rotated = both.rotate(written, "it")
    assert SecretCipher.from_keys(new).decrypt(rotated, "it") == SECRET  # the old key is no longer needed
    assert SecretCipher.from_keys(new).decrypt(both.rotate(SECRET, "it"), "it") == SECRET  # plaintext: encrypted
    with pytest.raises(SecretKeyError):
        SecretCipher.from_keys(old).decrypt(rotated, "it")


def test_without_the_setting_a_private_key_file_is_made_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = load_cipher(None, home)
    key_file = home / "secret.key"
    assert first.source == str(key_file) and mode(key_file) == 0o600 and mode(home) == 0o700
    stored = first.encrypt(SECRET)
    assert load_cipher(SecretStr(""), home).decrypt(stored, "it") == SECRET  # empty counts as unset: same file
    with ThreadPoolExecutor(8) as pool:  # processes starting together agree on one key
        ciphers = list(pool.map(lambda _: load_cipher(None, tmp_path / "race"), range(8)))
    assert len({c.decrypt(ciphers[0].encrypt("x"), "x") for c in ciphers}) == 1
    assert sorted(p.name for p in (tmp_path / "race").iterdir()) == ["secret.key"]


def test_the_setting_wins_over_the_key_file_and_is_never_shown(tmp_path: Path) -> None:
    key = generate_key()
    settings = Settings(home=tmp_path, secret_key=SecretStr(key))
    assert key not in repr(settings) and key not in str(settings.model_dump())
    cipher = load_cipher(settings.secret_key, tmp_path)
    assert cipher.source == KEY_ENV and key not in repr(cipher)
    assert not (tmp_path / "secret.key").exists()
    assert SecretCipher.from_keys(key).decrypt(cipher.encrypt(SECRET), "it") == SECRET


def test_existing_wide_modes_are_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    (home / "secret.key").write_text(generate_key())
    (home / "secret.key").chmod(0o644)
    load_cipher(None, home)
    assert mode(home) == 0o700 and mode(home / "secret.key") == 0o600
    private_dir(home / "a" / "b")
    assert mode(home / "a" / "b") == 0o700
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    private_dir(shared)  # a shared sticky directory such as /tmp is never narrowed
    assert mode(shared) == 0o1777
