"""Pulsar settings: Coze's variables (MQ_NAME_SERVER, PULSAR_JWT_TOKEN) plus PULSAR_* knobs."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from cozemq.settings import settings_config

DEFAULT_MAX_MESSAGE_SIZE = 5 * 1024 * 1024
"""The broker's maxMessageSize default (5 MiB)."""


class PulsarSettings(BaseSettings):
    model_config = settings_config()

    jwt_token: SecretStr | None = Field(default=None, alias="PULSAR_JWT_TOKEN")
    """A JWT for token authentication (Coze's variable)."""
    tenant: str = Field(default="public", min_length=1, alias="PULSAR_TENANT")
    namespace: str = Field(default="default", min_length=1, alias="PULSAR_NAMESPACE")

    tls_ca_file: str | None = Field(default=None, alias="PULSAR_TLS_CA_FILE")
    tls_cert_file: str | None = Field(default=None, alias="PULSAR_TLS_CERT_FILE")
    tls_key_file: str | None = Field(default=None, alias="PULSAR_TLS_KEY_FILE")
    tls_allow_insecure: bool = Field(default=False, alias="PULSAR_TLS_ALLOW_INSECURE")
    tls_validate_hostname: bool = Field(default=True, alias="PULSAR_TLS_VALIDATE_HOSTNAME")

    max_message_size: int = Field(default=DEFAULT_MAX_MESSAGE_SIZE, ge=1024,
                                  alias="PULSAR_MAX_MESSAGE_SIZE")
    """The broker's maxMessageSize; the body limit declared is this minus METADATA_RESERVE."""
    operation_timeout: float = Field(default=10.0, ge=1, alias="PULSAR_OPERATION_TIMEOUT")
    """Seconds a lookup, producer creation or subscribe may take before it fails."""
    send_timeout: float = Field(default=10.0, ge=1, alias="PULSAR_SEND_TIMEOUT")
    """Seconds one send waits for the broker's receipt; the core retries after it."""
    receiver_queue_size: int = Field(default=1000, ge=1, le=10_000,
                                     alias="PULSAR_RECEIVER_QUEUE_SIZE")
    """Upper bound of messages a consumer prefetches (the consumer's concurrency if lower)."""
    nack_delay: float = Field(default=0.1, ge=0.01, le=60, alias="PULSAR_NACK_DELAY")
    """The consumer's negative-ack redelivery delay (seconds), used to give messages back."""
    batching_max_messages: int = Field(default=10, ge=1, le=1000,
                                       alias="PULSAR_BATCHING_MAX_MESSAGES")
    """Messages per batch entry. The broker hands a whole entry to one group member, so small
    entries keep the work shared; larger ones send faster."""
    batching_max_publish_delay: float = Field(default=0.005, ge=0, le=1,
                                              alias="PULSAR_BATCHING_MAX_PUBLISH_DELAY")
