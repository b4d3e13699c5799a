"""Kafka backend for cozemq (COZE_MQ_TYPE=kafka), on aiokafka."""

from __future__ import annotations

from .backend import KafkaBackend
from .settings import KafkaSettings

__all__ = ["KafkaBackend", "KafkaSettings"]
