"""NSQ settings: MQ_NAME_SERVER (Coze's variable) plus cozemq's NSQ_* knobs."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from cozemq.settings import settings_config


class NsqSettings(BaseSettings):
    model_config = settings_config()

    lookupd_poll_interval: int = Field(default=60, ge=1, alias="NSQ_LOOKUPD_POLL_INTERVAL")
    """Seconds between a reader's nsqlookupd queries (new nsqd nodes for its topic)."""
    max_in_flight: int | None = Field(default=None, ge=1, alias="NSQ_MAX_IN_FLIGHT")
    """Caps RDY per consumer; unset: the consumer's concurrency (the usual choice)."""
    msg_timeout: float = Field(default=60.0, ge=1, alias="NSQ_MSG_TIMEOUT")
    """Seconds nsqd waits for FIN before redelivering (sent in IDENTIFY; nsqd allows 1 s up to
    its --max-msg-timeout, 15 min by default). The consumer TOUCHes every third of it."""
    max_msg_size: int = Field(default=1048576, ge=64, alias="NSQ_MAX_MSG_SIZE")
    """nsqd's --max-msg-size: the largest message nsqd accepts, envelope included."""
    max_body_size: int = Field(default=5242880, ge=64, alias="NSQ_MAX_BODY_SIZE")
    """nsqd's --max-body-size: the largest MPUB; bigger batches go in several MPUBs."""

    auth_secret: SecretStr | None = Field(default=None, alias="NSQ_AUTH_SECRET")
    """Sent with AUTH when nsqd runs with --auth-http-address."""

    tls: bool = Field(default=False, alias="NSQ_TLS")
    tls_ca_file: str | None = Field(default=None, alias="NSQ_TLS_CA_FILE")
    tls_cert_file: str | None = Field(default=None, alias="NSQ_TLS_CERT_FILE")
    tls_key_file: str | None = Field(default=None, alias="NSQ_TLS_KEY_FILE")
    tls_insecure: bool = Field(default=False, alias="NSQ_TLS_INSECURE")
    """Skip certificate verification (tests with self-signed certificates only)."""

    client_name: str = Field(default="cozemq", alias="NSQ_CLIENT_NAME")
    """The hostname/client_id nsqd shows for this connection in /stats."""
