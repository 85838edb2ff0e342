"""Provider credentials by id, read from a YAML file; API keys come from named environment variables.

The file is the operator's and is trusted. Credentials stored through the API are
not: their base URL is checked (``check_base_url``) when stored and again
whenever a run uses them, and the run calls the address that passed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from engine.configfile import load_yaml_model
from engine.errors import ConfigError
from engine.netpolicy import Resolver, Target, check_url, resolve_host

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Where a call's cost comes from: the pricing catalog (usage x list price), or what the endpoint reported.
CostSource = Literal["catalog", "provider"]
#: The setting that lists the base URLs allowed for credentials stored through the API.
PROVIDER_ALLOW_SETTING = "REHEARSAL_PROVIDER_ALLOW_HOSTS"


class Credential(BaseModel):
    """Where and how to reach one provider account. The key itself is never stored here."""

    model_config = ConfigDict(extra="forbid")

    vendor: Literal["openai"] = Field(description="`openai` = any OpenAI-compatible endpoint.")
    base_url: str = Field(OPENAI_BASE_URL, description="The endpoint's base URL (…/v1).")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    rate_limit_rps: float | None = Field(None, gt=0, description="Most requests per second to send.")
    cost_source: CostSource = Field(
        "catalog",
        description=(
            "Which cost of a call counts (is settled against the cap and summed): `catalog` = usage x the "
            "catalog's price; `provider` = the cost the endpoint reports in `x-litellm-response-cost` (a "
            "LiteLLM proxy), the catalog price where a call reports none. Both are recorded per pair."
        ),
    )
    secret: SecretStr | None = Field(None, exclude=True, description="A key stored through the API (never shown).")
    allow_hosts: list[str] | None = Field(
        None,
        exclude=True,
        description=(
            "Set on credentials stored through the API: the allow-list (REHEARSAL_PROVIDER_ALLOW_HOSTS) "
            "base_url is checked against each time a run uses it. None (the credentials file): trusted."
        ),
    )

    def target(self, credential_id: str, *, resolve: Resolver = resolve_host) -> Target | None:
        """Where a run may call this credential, or ``None`` for the trusted credentials file.

        A credential stored through the API has ``base_url`` checked again now: ``ConfigError``
        naming ``provider_credential_id`` when it is refused.
        """
        if self.allow_hosts is None:
            return None
        return check_base_url(
            self.base_url,
            self.allow_hosts,
            param="provider_credential_id",
            what=f"provider credential {credential_id!r} baseUrl",
            resolve=resolve,
        )

    def api_key(self, credential_id: str) -> str:
        """The stored key, else the key from the environment; keyless local endpoints get a placeholder."""
        if self.secret is not None:
            return self.secret.get_secret_value()
        if self.api_key_env is None:
            return "not-needed"
        value = os.environ.get(self.api_key_env)
        if not value:
            raise ConfigError(
                f"credential {credential_id!r} reads its API key from ${self.api_key_env}, which is not set",
                param="provider_credential_id",
            )
        return value


class Credentials(BaseModel):
    """The credentials file."""

    credentials: dict[str, Credential]

    def get(self, credential_id: str) -> Credential:
        """One credential; ``ConfigError`` naming the id when unknown."""
        try:
            return self.credentials[credential_id]
        except KeyError:
            raise ConfigError(
                f"unknown provider credential {credential_id!r}; known: {', '.join(sorted(self.credentials))}",
                param="provider_credential_id",
            ) from None

    def merged(self, extra: dict[str, Credential]) -> Credentials:
        """These credentials plus ``extra`` (which win on a shared id)."""
        return Credentials(credentials={**self.credentials, **extra})


def check_base_url(
    url: str, allow: list[str], *, param: str = "baseUrl", what: str = "baseUrl", resolve: Resolver = resolve_host
) -> Target:
    """Check a provider base URL stored through the API against ``allow`` (``REHEARSAL_PROVIDER_ALLOW_HOSTS``).

    The same rule as webhook targets (``engine.netpolicy``): public addresses only, unless listed.
    Returns the checked target; ``ConfigError`` naming ``param`` when refused.
    """
    return check_url(url, allow, setting=PROVIDER_ALLOW_SETTING, param=param, what=what, resolve=resolve)


def load_credentials(path: str | Path) -> Credentials:
    """Read and validate a credentials file."""
    return load_yaml_model(path, Credentials, what="credentials file", param="credentials")
