"""RocketMQ 5 backend for cozemq (COZE_MQ_TYPE=rmq, alias rocketmq), over the gRPC proxy."""

from __future__ import annotations

from .admin import RocketMQAdmin
from .backend import RocketMQBackend
from .settings import RocketMQSettings

__all__ = ["RocketMQAdmin", "RocketMQBackend", "RocketMQSettings"]
