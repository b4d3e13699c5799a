"""COZE_MQ_TYPE=kafka with aiokafka: an idempotent acks=all producer, one consumer group per
cozemq group, offsets committed only for handled messages, topics created on first use."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as ke
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import OffsetAndMetadata

from cozemq.backend import Backend, Capabilities, SubscribeSpec, Subscription
from cozemq.errors import (
    BrokerError,
    BrokerUnavailable,
    BusClosed,
    ConfigurationError,
    InvalidArgument,
)
from cozemq.message import OutgoingMessage
from cozemq.settings import Settings, load_settings, masked

from .connection import parse_bootstrap, security_options, translate
from .settings import BROKER_MESSAGE_MAX_BYTES, KafkaSettings
from .subscription import KafkaSubscription

log = logging.getLogger("cozemq.kafka")

_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_NAME = 249

BATCH_HEADER = 61
"""Bytes of a v2 record batch before its first record (offset, length, epoch, crc, ...)."""


def batch_size(key: bytes | None, body: bytes, headers: list[tuple[str, bytes]]) -> int:
    """Exact size of a record batch holding this one record: what message.max.bytes limits."""
    record = 1 + 1 + 1 + DefaultRecordBatchBuilder.size_of(key, body, headers)  # attrs, deltas
    return BATCH_HEADER + int(record) + _varint_size(record)


def _varint_size(value: int) -> int:
    zigzag = (value << 1) ^ (value >> 63)
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


_PROBE = 1_000_000
RECORD_OVERHEAD: int = batch_size(None, b"\0" * _PROBE, []) - _PROBE
"""Bytes a one-record batch adds around a body of about 1 MB (batch header, record framing)."""


def body_limit(message_max_bytes: int) -> int:
    """The largest body (no key, no headers) that fits the broker's message.max.bytes."""
    return message_max_bytes - RECORD_OVERHEAD


class KafkaBackend(Backend):
    name = "kafka"
    capabilities = Capabilities(
        persistent=True,
        redelivery=True,
        replays_to_new_groups=True,
        consumer_groups=True,
        ordering_by_key=True,
        native_headers=True,
        delayed_redelivery=False,
        deduplication=False,
        ack_deadline=False,
        max_message_size=body_limit(BROKER_MESSAGE_MAX_BYTES),
    )

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.own = load_settings(KafkaSettings, env)
        self.bootstrap = parse_bootstrap(settings.name_server)
        self.security = security_options(self.own)
        self.refine_capabilities(max_message_size=body_limit(self.own.max_message_bytes))
        self.request_timeout = self.own.request_timeout_ms / 1000
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._topics: set[str] = set()
        self._topic_locks: dict[str, asyncio.Lock] = {}
        self._subscriptions: set[KafkaSubscription] = set()
        self._closed = False

    # -- describing ------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"kafka://{','.join(self.bootstrap)}"

    def shown_settings(self) -> dict[str, str]:
        return masked(self.own)

    def validate_name(self, kind: str, name: str) -> None:
        if name in (".", "..") or len(name) > MAX_NAME or not _NAME.match(name):
            raise InvalidArgument(
                f"{kind} {name!r}: Kafka names are 1-{MAX_NAME} characters of a-z, A-Z, 0-9, "
                "'.', '_' and '-', and not '.' or '..'"
            )

    def message_size(self, message: OutgoingMessage) -> int:
        key = message.key.encode() if message.key is not None else None
        headers = [(k, v.encode()) for k, v in (message.headers or {}).items()]
        return batch_size(key, message.body, headers) - RECORD_OVERHEAD

    # -- connecting ------------------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap, "client_id": self.own.client_id,
                "request_timeout_ms": self.own.request_timeout_ms, **self.security}

    async def connect(self) -> None:
        if self._closed:
            raise BusClosed("kafka backend is closed")
        producer = AIOKafkaProducer(
            acks="all",
            enable_idempotence=self.own.idempotence,
            # The size check is the core's (against max_message_size); let the broker judge.
            max_request_size=max(2 * self.own.max_message_bytes, 1_048_576),
            linger_ms=0,
            **self._common(),
        )
        admin = AIOKafkaAdminClient(**self._common())
        try:
            await self._within_connect_timeout(producer.start(), "start the producer")
            await self._within_connect_timeout(admin.start(), "start the admin client")
        except BaseException:
            await _quietly(producer.stop())
            await _quietly(admin.close())
            raise
        self._producer, self._admin = producer, admin

    def _hint(self) -> str:
        """What to check when the broker cannot be reached with these security settings."""
        checks = []
        if "ssl_context" in self.security:
            checks.append(f"that the listener speaks {self.security['security_protocol']} "
                          "(KAFKA_SECURITY_PROTOCOL) and the TLS files KAFKA_TLS_CA_FILE, "
                          "KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE")
        if "sasl_mechanism" in self.security:
            checks.append(f"the {self.security['sasl_mechanism']} credentials of "
                          f"KAFKA_SASL_USERNAME={self.own.sasl_username!r}")
        return f"; if the broker is up, check {' and '.join(checks)}" if checks else ""

    async def _within_connect_timeout(self, step: Any, what: str) -> Any:
        timeout = self.settings.connect_timeout
        auth = self._hint()
        try:
            return await asyncio.wait_for(step, timeout)
        except TimeoutError:
            raise BrokerUnavailable(
                f"kafka: could not {what} at {','.join(self.bootstrap)} within {timeout:g}s "
                f"(COZEMQ_CONNECT_TIMEOUT){auth}"
            ) from None
        except ke.KafkaConnectionError as exc:
            if "ssl_context" in self.security:
                await self._check_tls()
            if "sasl_mechanism" in self.security:
                await self._check_credentials()
            raise BrokerUnavailable(
                f"kafka: could not {what} at {','.join(self.bootstrap)}: {exc}{auth}"
            ) from None
        except ke.KafkaError as exc:
            raise translate(exc, what) from None

    async def _check_tls(self) -> None:
        """After a failed bootstrap with TLS: one handshake of our own, to tell a certificate
        problem (ConfigurationError naming the setting) from an unreachable broker."""
        host, _, port = self.bootstrap[0].rpartition(":")
        context: ssl.SSLContext = self.security["ssl_context"]
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                reader, writer = await asyncio.open_connection(host.strip("[]"), int(port),
                                                               ssl=context)
                # TLS 1.3 reports a refused client certificate after the handshake, on the
                # first read; a zero-length frame makes the broker answer by closing.
                writer.write(b"\0\0\0\0")
                await reader.read(1)
        except ssl.SSLCertVerificationError as exc:
            raise ConfigurationError(
                f"kafka: the certificate of the broker at {self.bootstrap[0]} is not trusted "
                f"({exc.verify_message}): check KAFKA_TLS_CA_FILE={self.own.tls_ca_file!r} "
                "(the CA that signed the broker's certificate, which must name this host)"
            ) from None
        except ssl.SSLError as exc:
            if exc.reason not in _REFUSED_CLIENT_CERTIFICATE:
                return
            given = (f"KAFKA_TLS_CERT_FILE={self.own.tls_cert_file!r}" if self.own.tls_cert_file
                     else "no KAFKA_TLS_CERT_FILE")
            raise ConfigurationError(
                f"kafka: the broker at {self.bootstrap[0]} refused the client certificate "
                f"({exc.reason}; {given}): it requires one signed by a CA it trusts; set "
                "KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE (and KAFKA_TLS_KEY_PASSWORD for an "
                "encrypted key)"
            ) from None
        except Exception:
            return  # unreachable or otherwise: the caller reports BrokerUnavailable
        finally:
            if writer is not None:
                writer.close()

    async def _check_credentials(self) -> None:
        """After a failed bootstrap with SASL: one direct connection, to tell a refused login
        (ConfigurationError) from an unreachable broker. The password never appears."""
        host, _, port = self.bootstrap[0].rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(host.strip("[]"), int(port), client_id=self.own.client_id,
                            request_timeout_ms=self.own.request_timeout_ms, **self.security),
                self.settings.connect_timeout,
            )
        except (ke.SaslAuthenticationFailed, ke.AuthenticationFailedError) as exc:
            raise ConfigurationError(
                f"kafka: the broker at {self.bootstrap[0]} refused the "
                f"{self.security['sasl_mechanism']} login of "
                f"KAFKA_SASL_USERNAME={self.own.sasl_username!r}: wrong user name or "
                f"KAFKA_SASL_PASSWORD ({type(exc).__name__})"
            ) from None
        except ke.UnsupportedSaslMechanismError:
            raise ConfigurationError(
                f"kafka: the broker at {self.bootstrap[0]} does not enable "
                f"KAFKA_SASL_MECHANISM={self.security['sasl_mechanism']}"
            ) from None
        except Exception:
            return  # unreachable or otherwise: the caller reports BrokerUnavailable
        conn.close()

    async def ping(self) -> None:
        admin = self._require_admin()
        try:
            await asyncio.wait_for(admin.list_topics(), self.request_timeout)
        except Exception as exc:
            raise translate(exc, "list topics") from exc

    async def close(self) -> None:
        self._closed = True
        for subscription in list(self._subscriptions):
            await _quietly(subscription.close())
        if self._producer is not None:
            await _quietly(self._producer.stop())
        if self._admin is not None:
            await _quietly(self._admin.close())

    def _require_producer(self) -> AIOKafkaProducer:
        if self._closed:
            raise BusClosed("kafka backend is closed")
        if self._producer is None:
            raise BrokerUnavailable("kafka: not connected")
        return self._producer

    def _require_admin(self) -> AIOKafkaAdminClient:
        if self._closed:
            raise BusClosed("kafka backend is closed")
        if self._admin is None:
            raise BrokerUnavailable("kafka: not connected")
        return self._admin

    # -- topics ----------------------------------------------------------------------------------

    async def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` with KAFKA_TOPIC_PARTITIONS partitions unless it exists (once)."""
        if topic in self._topics or not self.own.create_topics:
            return
        lock = self._topic_locks.setdefault(topic, asyncio.Lock())
        async with lock:
            if topic in self._topics:
                return
            admin = self._require_admin()
            new = NewTopic(topic, self.own.topic_partitions, self.own.topic_replication)
            try:
                response = await asyncio.wait_for(
                    admin.create_topics([new], timeout_ms=self.own.request_timeout_ms),
                    self.request_timeout + 1,
                )
            except Exception as exc:
                raise translate(exc, f"create topic {topic!r}") from exc
            for item in response.topic_errors:
                code, message = item[1], (item[2] if len(item) > 2 else None)
                if code in (0, ke.TopicAlreadyExistsError.errno):
                    continue
                error = ke.for_code(code)
                if error.retriable:
                    raise BrokerUnavailable(f"kafka: create topic {topic!r}: {error.__name__}")
                raise BrokerError(
                    f"kafka: the broker refused to create topic {topic!r} "
                    f"({error.__name__}: {message or error.description}); create it yourself "
                    "or set KAFKA_CREATE_TOPICS=false if the broker creates topics on use"
                )
            self._topics.add(topic)

    async def create_topic(self, topic: str, *, orderly: bool = False) -> None:
        # Kafka keeps order per key in any topic (the key picks the partition).
        await self.ensure_topic(topic)

    # -- producing -------------------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        producer = self._require_producer()
        await self.ensure_topic(topic)
        try:
            # Hand every record to the client first (it batches them), then wait for all.
            futures = [
                await producer.send(
                    topic,
                    m.body,
                    key=m.key.encode() if m.key is not None else None,
                    headers=[(k, v.encode()) for k, v in m.headers.items()] if m.headers
                    else None,
                )
                for m in messages
            ]
            await asyncio.gather(*futures)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise translate(exc, f"send to {topic!r}") from exc

    # -- consuming -------------------------------------------------------------------------------

    async def subscribe(self, spec: SubscribeSpec) -> Subscription:
        if self._closed:
            raise BusClosed("kafka backend is closed")
        await self.ensure_topic(spec.topic)
        o = self.own
        consumer = AIOKafkaConsumer(
            group_id=spec.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=o.session_timeout_ms,
            heartbeat_interval_ms=o.heartbeat_interval_ms,
            max_poll_interval_ms=o.max_poll_interval_ms,
            max_poll_records=max(1, spec.prefetch),
            **self._common(),
        )
        subscription = KafkaSubscription(self, spec, consumer)
        consumer.subscribe([spec.topic], listener=subscription.listener)
        try:
            await self._within_connect_timeout(consumer.start(), "start the consumer")
        except BaseException:
            await _quietly(consumer.stop())
            raise
        # Return once this member holds its share, so messages sent next are spread over every
        # member already registered. A slow join is not an error: the group assigns later.
        join_wait = self.settings.connect_timeout + o.session_timeout_ms / 1000
        try:
            await asyncio.wait_for(subscription.joined.wait(), join_wait)
        except TimeoutError:
            log.warning("%s/%s: no partitions assigned within %.0fs; consuming once the group "
                        "rebalances", spec.topic, spec.group, join_wait)
        self._subscriptions.add(subscription)
        return subscription

    def forget(self, subscription: KafkaSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def committed(
        self, group: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """The group's committed offsets with their metadata (delivery counts)."""
        result: dict[TopicPartition, OffsetAndMetadata] = (
            await self._require_admin().list_consumer_group_offsets(group, partitions=partitions)
        )
        return result


_REFUSED_CLIENT_CERTIFICATE = frozenset({
    "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_ACCESS_DENIED",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE",
})
"""OpenSSL alert reasons a broker sends when it does not accept the client's certificate."""


async def _quietly(step: Any) -> None:
    try:
        await step
    except Exception as exc:
        log.debug("kafka: ignored while closing: %r", exc)


__all__ = ["KafkaBackend", "body_limit"]
