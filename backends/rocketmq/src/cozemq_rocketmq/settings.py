"""RocketMQ settings: Coze Studio's variables with their meaning, plus cozemq's RMQ_* knobs."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from cozemq.settings import settings_config


class RocketMQSettings(BaseSettings):
    model_config = settings_config()

    proxy_endpoint: str | None = Field(default=None, alias="RMQ_PROXY_ENDPOINT")
    """The proxy's gRPC endpoint (host:port, ';'-separated); wins over MQ_NAME_SERVER."""
    namesrv_addr: str | None = Field(default=None, alias="RMQ_NAMESRV_ADDR")
    """The name server (host:9876), used only to create topics and groups."""

    access_key: SecretStr | None = Field(default=None, alias="RMQ_ACCESS_KEY")
    secret_key: SecretStr | None = Field(default=None, alias="RMQ_SECRET_KEY")
    namespace: str = Field(default="", alias="RMQ_NAMESPACE")
    tls: bool = Field(default=False, alias="RMQ_TLS")

    invisible_duration: int = Field(default=30, ge=1, alias="RMQ_INVISIBLE_DURATION")
    """Seconds a received message stays hidden from the group; extended while handlers run."""
    min_invisible_duration: int = Field(default=10, ge=1, alias="RMQ_MIN_INVISIBLE_DURATION")
    """The proxy's minimum (minInvisibleTimeMillsForRecv, 10 s by default): a give-back."""
    poll_wait: int = Field(default=5, ge=1, le=20, alias="RMQ_POLL_WAIT")
    """Long-polling seconds of one receive (the proxy's minimum is 5 s by default)."""
    request_timeout: int = Field(default=3, ge=1, alias="RMQ_REQUEST_TIMEOUT")

    auto_create_topics: bool = Field(default=False, alias="RMQ_AUTO_CREATE_TOPICS")
    """Create missing topics (MIXED) and groups through the name server's brokers."""
    topic_queues: int = Field(default=8, ge=1, le=1024, alias="RMQ_TOPIC_QUEUES")
    cluster: str | None = Field(default=None, alias="RMQ_CLUSTER")
    """Create topics only on this cluster's brokers (default: every master broker)."""
