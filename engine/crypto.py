"""Secrets at rest: the cipher of the store's secret columns, its key, and private file modes.

Provider API keys and webhook signing secrets are stored Fernet-encrypted
(AES-128-CBC + HMAC-SHA256) under keys from ``REHEARSAL_SECRET_KEY``: one or
more comma-separated Fernet keys, the first encrypts and every one decrypts,
so a new key can go in front of the old one before ``rehearsal secrets
rotate`` re-encrypts everything with it. Without the variable an embedded
install generates ``$REHEARSAL_HOME/secret.key`` (mode 0600) on first use.
That file only helps while it is not copied along with the database, so
production sets the variable and keeps the key apart from ``$REHEARSAL_HOME``.

Stored values carry a tag (``fernet:v1:``); an untagged value is a secret
written before encryption existed and reads as it is until rotation encrypts it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from engine.errors import SecretKeyError

#: The tag of an encrypted value in the store (version 1: Fernet under the first key).
TAG = "fernet:v1:"
#: The setting holding the keys.
KEY_ENV = "REHEARSAL_SECRET_KEY"
#: The generated key file of an embedded install, in ``$REHEARSAL_HOME``.
KEY_FILE = "secret.key"


def generate_key() -> str:
    """A new random Fernet key (44 url-safe base64 characters)."""
    return Fernet.generate_key().decode()


def parse_keys(value: str, source: str) -> list[Fernet]:
    """The Fernet keys of a comma-separated list; ``SecretKeyError`` (naming ``source``, never a key) when malformed."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise SecretKeyError(f"{source} holds no key; generate one with `rehearsal secrets new-key`", param=KEY_ENV)
    keys = []
    for position, part in enumerate(parts, start=1):
        try:
            keys.append(Fernet(part.encode()))
        except (ValueError, TypeError):
            raise SecretKeyError(
                f"key {position} of {source} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "generate one with `rehearsal secrets new-key`",
                param=KEY_ENV,
            ) from None
    return keys


class SecretCipher:
    """Encrypts secrets for the store and decrypts them; pure (the keys are given)."""

    def __init__(self, keys: Sequence[Fernet], *, source: str) -> None:
        if not keys:
            raise SecretKeyError(f"{source} holds no key", param=KEY_ENV)
        self._fernet = MultiFernet(list(keys))
        #: Where the keys came from, for messages (never the keys themselves).
        self.source = source

    def __repr__(self) -> str:
        return f"SecretCipher(source={self.source!r})"

    @classmethod
    def from_keys(cls, value: str, *, source: str = KEY_ENV) -> SecretCipher:
        """A cipher over comma-separated keys (the first encrypts)."""
        return cls(parse_keys(value, source), source=source)

    @staticmethod
    def is_encrypted(stored: str) -> bool:
        """Whether a stored value carries the encryption tag (else it is legacy plaintext)."""
        return stored.startswith(TAG)

    def encrypt(self, secret: str) -> str:
        """The tagged ciphertext of ``secret`` under the first key."""
        return TAG + self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, stored: str, what: str) -> str:
        """The secret a stored value holds (legacy plaintext as it is); ``what`` names it in errors."""
        if not self.is_encrypted(stored):
            return stored
        try:
            return self._fernet.decrypt(stored.removeprefix(TAG).encode()).decode()
        except InvalidToken:
            raise self._wrong_key(what) from None

    def rotate(self, stored: str, what: str) -> str:
        """``stored`` re-encrypted under the first key (legacy plaintext gets encrypted)."""
        if not self.is_encrypted(stored):
            return self.encrypt(stored)
        try:
            return TAG + self._fernet.rotate(stored.removeprefix(TAG).encode()).decode()
        except InvalidToken:
            raise self._wrong_key(what) from None

    def _wrong_key(self, what: str) -> SecretKeyError:
        hint = (
            f"set {KEY_ENV} to the key it was written with (during a rotation: the new key first, then the old one)"
            if self.source == KEY_ENV
            else f"{KEY_ENV} is not set; set it to the key it was written with, or restore that key file"
        )
        return SecretKeyError(f"{what} cannot be decrypted with the key from {self.source}: {hint}", param=KEY_ENV)


def load_cipher(secret_key: SecretStr | None, home: Path) -> SecretCipher:
    """The cipher of ``REHEARSAL_SECRET_KEY``, else of ``home/secret.key`` (generated, mode 0600, when absent)."""
    if secret_key is not None and secret_key.get_secret_value().strip():
        return SecretCipher.from_keys(secret_key.get_secret_value())
    path = home / KEY_FILE
    private_dir(home)
    return SecretCipher.from_keys(_read_or_create_key(path), source=str(path))


def _read_or_create_key(path: Path) -> str:
    try:
        private_file(path)
        return path.read_text()
    except FileNotFoundError:
        pass
    # Written aside and linked into place, so a process starting at the same moment reads a whole key or none.
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(generate_key() + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its key
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return path.read_text()


def _owned(st: os.stat_result) -> bool:
    return not hasattr(os, "getuid") or st.st_uid == os.getuid()


def private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700, or take group and other access off one this user owns.

    A shared sticky directory (``/tmp``) is left as it is: it belongs to everyone, whoever owns it.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.stat().st_mode & stat.S_ISVTX:
        _tighten(path, 0o700)


def private_file(path: Path) -> None:
    """Take group and other access off an existing file this user owns (``FileNotFoundError`` when absent)."""
    _tighten(path, 0o600)


def _tighten(path: Path, mode: int) -> None:
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & 0o077 and _owned(st):
        os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
