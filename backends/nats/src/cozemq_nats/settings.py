"""NATS settings: Coze Studio's variables with their meaning, plus cozemq's NATS_* knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from cozemq.settings import settings_config


class NatsSettings(BaseSettings):
    model_config = settings_config()

    server_url: str | None = Field(default=None, alias="NATS_SERVER_URL")
    """Comma-separated cluster list (nats:// or tls://); wins over MQ_NAME_SERVER."""
    use_jetstream: bool = Field(default=True, alias="NATS_USE_JETSTREAM")

    jwt_token: SecretStr | None = Field(default=None, alias="NATS_JWT_TOKEN")
    nkey_seed: SecretStr | None = Field(default=None, alias="NATS_NKEY_SEED")
    """An NKey seed (SU...), or the path of a file holding one."""
    creds_file: str | None = Field(default=None, alias="NATS_CREDS_FILE")
    username: str | None = Field(default=None, alias="NATS_USERNAME")
    password: SecretStr | None = Field(default=None, alias="NATS_PASSWORD")
    token: SecretStr | None = Field(default=None, alias="NATS_TOKEN")

    tls_ca_file: str | None = Field(default=None, alias="NATS_TLS_CA_FILE")
    tls_cert_file: str | None = Field(default=None, alias="NATS_TLS_CERT_FILE")
    tls_key_file: str | None = Field(default=None, alias="NATS_TLS_KEY_FILE")

    stream_replicas: int = Field(default=1, ge=1, le=5, alias="NATS_STREAM_REPLICAS")
    stream_storage: Literal["file", "memory"] = Field(default="file", alias="NATS_STREAM_STORAGE")
    duplicate_window: float = Field(default=120.0, gt=0, alias="NATS_DUPLICATE_WINDOW")
    pending_messages: int = Field(default=65_536, ge=1, alias="NATS_PENDING_MESSAGES")
    """Core NATS: messages the client buffers per consumer before it drops (slow consumer)."""
    pending_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, alias="NATS_PENDING_BYTES")
    """Core NATS: bytes the client buffers per consumer before it drops."""
    ack_wait: float = Field(default=30.0, ge=1, alias="NATS_ACK_WAIT")
    client_name: str = Field(default="cozemq", alias="NATS_CLIENT_NAME")
