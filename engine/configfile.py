"""Reading YAML configuration files into pydantic models, with errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from engine.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(
    path: str | Path, model: type[M], *, what: str, param: str | None = None, missing_param: str | None = None
) -> M:
    """Validate the YAML file at ``path`` into ``model``.

    Errors are ``ConfigError`` with ``param`` (default: the dotted path of the
    offending field; ``missing_param`` for an unreadable file).
    """
    missing_param = missing_param or param
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", param=missing_param) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}", param=missing_param) from None
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "file"
        raise ConfigError(f"{what} {path}: {where}: {error['msg']}", param=param or where) from None
