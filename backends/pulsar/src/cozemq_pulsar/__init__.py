"""Apache Pulsar backend for cozemq (COZE_MQ_TYPE=pulsar), on pulsar-client's asyncio bridge."""

from __future__ import annotations

from .backend import PulsarBackend, PulsarDelivery, PulsarSubscription
from .settings import PulsarSettings

__all__ = ["PulsarBackend", "PulsarDelivery", "PulsarSettings", "PulsarSubscription"]
