"""What core NATS and JetStream share: the connection, names, headers and error mapping."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client

from cozemq.backend import Backend
from cozemq.errors import BrokerUnavailable, ConfigurationError, InvalidArgument
from cozemq.message import OutgoingMessage
from cozemq.settings import Settings, load_settings, masked

from .connection import auth_options, parse_servers, redact, tls_context
from .settings import NatsSettings

log = logging.getLogger("cozemq.nats")

KEY_HEADER = "Cozemq-Key"
COZE_KEY_HEADER = "Sharding-Key"  # what Coze's Go producer writes on core NATS
MSG_ID_HEADER = "Nats-Msg-Id"

# A subject token may not hold whitespace or wildcards; '.' separates tokens.
_SUBJECT = re.compile(r"^[^\s*>.]+(\.[^\s*>.]+)*$")

TRANSIENT = (
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionClosedError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    asyncio.TimeoutError,
    ConnectionError,
)


def header_block(message: OutgoingMessage) -> dict[str, str] | None:
    if message.key is None and not message.headers and message.idempotency_key is None:
        return None  # the fast path: no header block at all
    block = dict(message.headers or {})
    if message.key is not None:
        block[KEY_HEADER] = message.key
    if message.idempotency_key is not None:
        block[MSG_ID_HEADER] = message.idempotency_key
    return block


def split_headers(raw: Mapping[str, str] | None) -> tuple[str | None, Mapping[str, str]]:
    """(sharding key, user headers) from a received header block."""
    if not raw:
        return None, {}
    headers = dict(raw)
    key = headers.pop(KEY_HEADER, None)
    if key is None:
        key = headers.get(COZE_KEY_HEADER)
    return key, headers


class NatsBackendBase(Backend):
    name = "nats"
    mode: str

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.nats_settings = own = load_settings(NatsSettings, env)
        raw, source = own.server_url, "NATS_SERVER_URL"
        if not raw:
            raw, source = settings.name_server, "MQ_NAME_SERVER"
        if not raw:
            raise ConfigurationError(
                "set NATS_SERVER_URL or MQ_NAME_SERVER to the NATS server, e.g. "
                "nats://127.0.0.1:4222 (comma-separate a cluster)"
            )
        self.servers = parse_servers(raw, source)
        self._options: dict[str, Any] = auth_options(own)
        self._tls = tls_context(own, self.servers)
        self.nc: Client | None = None
        self._last_error: str | None = None
        self._auth_error: str | None = None
        self._closing = False

    def shown_settings(self) -> dict[str, str]:
        return masked(self.nats_settings)

    def describe(self) -> str:
        return f"nats {self.mode} {','.join(redact(u) for u in self.servers)}"

    async def connect(self) -> None:
        nc = Client()
        timeout = self.settings.connect_timeout
        try:
            await asyncio.wait_for(
                nc.connect(
                    servers=self.servers,
                    name=self.nats_settings.client_name,
                    connect_timeout=max(1, int(timeout)),
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,  # type: ignore[arg-type]
                    tls=self._tls,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    **self._options,
                ),
                timeout,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await _quietly_close(nc)
            reason = self._last_error or type(exc).__name__
            if self._auth_error:
                reason = (f"{self._auth_error}: the server refused the credentials (check "
                          "NATS_JWT_TOKEN/NATS_NKEY_SEED, NATS_CREDS_FILE, "
                          "NATS_USERNAME/NATS_PASSWORD or NATS_TOKEN)")
            raise BrokerUnavailable(
                f"NATS at {', '.join(redact(u) for u in self.servers)} did not accept a "
                f"connection within {timeout:g}s (COZEMQ_CONNECT_TIMEOUT): {reason}"
            ) from None
        self.nc = nc
        if nc.max_payload:  # the server's limit, announced at connect
            self.refine_capabilities(max_message_size=nc.max_payload)
        await self.after_connect()

    async def after_connect(self) -> None:
        """Mode-specific set-up once connected."""

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            await self.on_slow_consumer(exc)
            return
        self._last_error = str(exc) or type(exc).__name__
        if "authoriz" in self._last_error.lower() or "authentication" in self._last_error.lower():
            self._auth_error = self._last_error
        log.debug("nats error: %r", exc)

    async def on_slow_consumer(self, exc: nats.errors.SlowConsumerError) -> None:
        """nats-py dropped a message for a subscription that fell behind."""

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        log.warning("nats: disconnected from %s, reconnecting", self.describe())

    async def _on_reconnected(self) -> None:
        log.warning("nats: reconnected (%s)", self.describe())

    @property
    def connection(self) -> Client:
        assert self.nc is not None, "connect() first"
        return self.nc

    async def ping(self) -> None:
        try:
            await self.connection.flush(timeout=self.settings.connect_timeout)  # type: ignore[arg-type]
        except TRANSIENT as exc:
            raise BrokerUnavailable(f"NATS did not answer a ping: {exc!r}") from None

    async def close(self) -> None:
        self._closing = True
        if self.nc is not None:
            nc, self.nc = self.nc, None
            try:
                await asyncio.wait_for(nc.flush(), 5)
            except Exception as exc:
                log.debug("nats flush on close: %r", exc)
            await _quietly_close(nc)

    def validate_name(self, kind: str, name: str) -> None:
        if kind == "group":
            if not re.fullmatch(r"[^\s*>.]+", name):
                raise InvalidArgument(
                    f"group {name!r}: NATS group names may not contain whitespace, '.', '*' "
                    "or '>'"
                )
        elif not _SUBJECT.match(name):
            raise InvalidArgument(
                f"{kind} {name!r}: NATS subjects are dot-separated tokens without whitespace, "
                "'*' or '>' (e.g. 'opencoze_knowledge' or 'orders.created')"
            )

    def message_size(self, message: OutgoingMessage) -> int:
        block = header_block(message)
        if not block:
            return len(message.body)
        head = 12 + sum(len(k) + len(v.encode()) + 4 for k, v in block.items())
        return len(message.body) + head


async def _quietly_close(nc: Client) -> None:
    try:
        await asyncio.wait_for(nc.close(), 5)
    except Exception as exc:
        log.debug("nats close: %r", exc)
