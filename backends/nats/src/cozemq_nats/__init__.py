"""NATS backend for cozemq: core NATS or JetStream (NATS_USE_JETSTREAM, default true)."""

from __future__ import annotations

from collections.abc import Mapping

from cozemq.backend import Backend
from cozemq.settings import Settings, load_settings

from .core import NatsCoreBackend
from .jetstream import JetStreamBackend
from .settings import NatsSettings


def NatsBackend(settings: Settings, env: Mapping[str, str] | None = None) -> Backend:
    """The entry point for COZE_MQ_TYPE=nats: JetStream unless NATS_USE_JETSTREAM=false."""
    if load_settings(NatsSettings, env).use_jetstream:
        return JetStreamBackend(settings, env)
    return NatsCoreBackend(settings, env)


__all__ = ["JetStreamBackend", "NatsBackend", "NatsCoreBackend", "NatsSettings"]
