"""Configuration from the environment (and a ``.env`` file), with pydantic-settings.

Variables keep the names and meanings Coze Studio gives them (COZE_MQ_TYPE, MQ_NAME_SERVER, ...).
cozemq's own knobs start with COZEMQ_. Each backend adds its own settings class built the same
way (see :func:`load_settings`). Secrets are ``SecretStr``: masked in reprs, logs and errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError

SettingsT = TypeVar("SettingsT", bound=BaseSettings)

ENV_FILE = ".env"


def settings_config() -> SettingsConfigDict:
    """The one configuration every cozemq settings class shares."""
    return SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=True,
        hide_input_in_errors=True,
    )


class Settings(BaseSettings):
    """Settings shared by every backend."""

    model_config = settings_config()

    mq_type: str | None = Field(default=None, alias="COZE_MQ_TYPE")
    name_server: str | None = Field(default=None, alias="MQ_NAME_SERVER")

    connect_timeout: float = Field(default=5.0, gt=0, alias="COZEMQ_CONNECT_TIMEOUT")
    send_timeout: float = Field(default=30.0, gt=0, alias="COZEMQ_SEND_TIMEOUT")
    close_timeout: float = Field(default=30.0, ge=0, alias="COZEMQ_CLOSE_TIMEOUT")

    max_deliveries: int = Field(default=5, ge=1, alias="COZEMQ_MAX_DELIVERIES")
    retry_backoff: float = Field(default=1.0, ge=0, alias="COZEMQ_RETRY_BACKOFF")
    retry_backoff_max: float = Field(default=60.0, ge=0, alias="COZEMQ_RETRY_BACKOFF_MAX")
    concurrency: int = Field(default=8, ge=1, alias="COZEMQ_CONCURRENCY")
    dead_letter_suffix: str | None = Field(
        default=None, min_length=1, alias="COZEMQ_DEAD_LETTER_SUFFIX"
    )
    """Unset: the backend's default (".dlq", or "_dlq" where '.' is not allowed in names)."""


def _describe(cls: type[BaseSettings], error: ValidationError) -> str:
    """A ValidationError as text that names variables by their env name and hides secrets."""
    aliases = {name: (f.alias or name) for name, f in cls.model_fields.items()}
    secret = {
        name for name, f in cls.model_fields.items()
        if f.annotation in (SecretStr, SecretStr | None)
    }
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        env_name = aliases.get(field, field)
        shown = "" if field in secret else f" (got {item.get('input')!r})"
        lines.append(f"{env_name}: {item['msg']}{shown}")
    return "; ".join(lines)


def load_settings(cls: type[SettingsT], env: Mapping[str, str] | None = None) -> SettingsT:
    """Build ``cls`` from the process environment, ``.env``, and ``env`` on top.

    ``env`` uses the environment variable names, so tests and the CLI pass the same
    mapping a deployment would export.
    """
    overrides: dict[str, Any] = {}
    if env:
        names = {f.alias or n for n, f in cls.model_fields.items()}
        overrides = {k: v for k, v in env.items() if k in names}
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid configuration: {_describe(cls, exc)}") from None


def masked(settings: BaseSettings) -> dict[str, str]:
    """Every setting by its env name, with secrets shown as '******' (for `cozemq doctor`)."""
    shown: dict[str, str] = {}
    for name, f in type(settings).model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        shown[f.alias or name] = "******" if isinstance(value, SecretStr) else str(value)
    return shown
