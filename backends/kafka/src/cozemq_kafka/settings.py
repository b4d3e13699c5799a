"""Kafka settings: Coze Studio's MQ_NAME_SERVER (split into a bootstrap list) plus KAFKA_* knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from cozemq.settings import settings_config

BROKER_MESSAGE_MAX_BYTES = 1_048_588
"""Kafka's default message.max.bytes: the largest record batch a broker accepts."""


class KafkaSettings(BaseSettings):
    model_config = settings_config()

    client_id: str = Field(default="cozemq", min_length=1, alias="KAFKA_CLIENT_ID")

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        default=None, alias="KAFKA_SECURITY_PROTOCOL"
    )
    """Unset: SASL_* when KAFKA_SASL_MECHANISM is set, *SSL when a TLS file is set."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, alias="KAFKA_SASL_MECHANISM"
    )
    sasl_username: str | None = Field(default=None, alias="KAFKA_SASL_USERNAME")
    sasl_password: SecretStr | None = Field(default=None, alias="KAFKA_SASL_PASSWORD")

    tls_ca_file: str | None = Field(default=None, alias="KAFKA_TLS_CA_FILE")
    tls_cert_file: str | None = Field(default=None, alias="KAFKA_TLS_CERT_FILE")
    tls_key_file: str | None = Field(default=None, alias="KAFKA_TLS_KEY_FILE")
    tls_key_password: SecretStr | None = Field(default=None, alias="KAFKA_TLS_KEY_PASSWORD")

    topic_partitions: int = Field(default=3, ge=1, alias="KAFKA_TOPIC_PARTITIONS")
    topic_replication: int = Field(default=1, ge=1, alias="KAFKA_TOPIC_REPLICATION")
    create_topics: bool = Field(default=True, alias="KAFKA_CREATE_TOPICS")
    """Create a missing topic (with the partitions and replication above) on first use."""

    max_message_bytes: int = Field(default=BROKER_MESSAGE_MAX_BYTES, ge=1024,
                                   alias="KAFKA_MAX_MESSAGE_BYTES")
    """The broker's (or topic's) message.max.bytes; bodies are checked against it before sending."""
    idempotence: bool = Field(default=True, alias="KAFKA_IDEMPOTENCE")

    request_timeout_ms: int = Field(default=30_000, ge=1000, alias="KAFKA_REQUEST_TIMEOUT_MS")
    session_timeout_ms: int = Field(default=10_000, ge=1000, alias="KAFKA_SESSION_TIMEOUT_MS")
    heartbeat_interval_ms: int = Field(default=3_000, ge=100, alias="KAFKA_HEARTBEAT_INTERVAL_MS")
    max_poll_interval_ms: int = Field(default=300_000, ge=1000, alias="KAFKA_MAX_POLL_INTERVAL_MS")
    rebalance_drain: float = Field(default=5.0, ge=0, alias="KAFKA_REBALANCE_DRAIN")
    """Seconds a member waits, when partitions are taken from it, for their in-flight handlers."""
