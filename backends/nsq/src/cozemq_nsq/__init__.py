"""NSQ backend for cozemq (COZE_MQ_TYPE=nsq): nsqd over TCP through pynsq, on the asyncio loop."""

from __future__ import annotations

from .backend import NsqBackend
from .settings import NsqSettings

__all__ = ["NsqBackend", "NsqSettings"]
