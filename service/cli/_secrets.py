"""``rehearsal secrets``: the key that encrypts provider API keys and webhook secrets at rest."""

from __future__ import annotations

import typer

from engine.crypto import KEY_ENV, generate_key
from service.cli._common import JsonOpt, err, out, print_json, services

secrets_app = typer.Typer(help=f"Secrets at rest: keys for {KEY_ENV} and their rotation.", no_args_is_help=True)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@secrets_app.command("rotate")
def rotate(json_: JsonOpt = False) -> None:
    """Re-encrypt every stored secret (legacy plaintext ones too) with the first key of REHEARSAL_SECRET_KEY.

    To rotate: put a new key in front (REHEARSAL_SECRET_KEY=NEW,OLD), run this, then drop the old key.
    """
    store = services().store
    counts = store.rotate_secrets()
    if json_:
        print_json(counts | {"key_source": store.cipher.source})
        return
    where = f"the first key of {KEY_ENV}" if store.cipher.source == KEY_ENV else f"the key in {store.cipher.source}"
    out.print(
        f"re-encrypted {_plural(counts['provider_credentials'], 'provider API key')} and "
        f"{_plural(counts['webhooks'], 'webhook secret')} with {where} "
        f"({counts['plaintext']} had been stored in plain text)",
        soft_wrap=True,
    )
    if store.cipher.source == KEY_ENV:
        err.print(f"older keys in {KEY_ENV} are no longer needed: drop them and keep only the first")


@secrets_app.command("new-key")
def new_key() -> None:
    """Print a new random key for REHEARSAL_SECRET_KEY (nothing is stored)."""
    out.print(generate_key())
