"""JetStream: a stream per topic, a durable pull consumer per group, explicit acks.

The broker keeps each message until the group acks it; nak carries the backoff delay;
in_progress pushes the ack deadline back while a handler works. Orderly groups allow one
unacknowledged message at a time (max_ack_pending=1), so order per key holds across members
and redeliveries. Msg-Id deduplication happens only for an explicit idempotency_key.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping, Sequence

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from cozemq.backend import Capabilities, Delivery, SubscribeSpec, Subscription
from cozemq.errors import BrokerError, BrokerUnavailable, MessageTooLarge
from cozemq.message import OutgoingMessage
from cozemq.once import Once
from cozemq.settings import Settings

from .base import TRANSIENT, NatsBackendBase, header_block, split_headers

MAX_ACK_PENDING = 1000
REQUEST_TIMEOUT = 5.0
_MAX_PAYLOAD_ERR = 10054


def stream_name(topic: str) -> str:
    """A valid stream name for a topic; a topic that needs changing gets a hash suffix."""
    return _safe_name(topic)


def durable_name(group: str) -> str:
    return _safe_name(group)


def _safe_name(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_-]{1,200}", name):
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:180] + "_" + digest


class JetStreamDelivery(Delivery):
    __slots__ = ("_msg",)
    inline_settle = True  # +ACK/-NAK are fire-and-forget publishes

    def __init__(self, msg: Msg) -> None:
        meta = msg.metadata
        key, headers = split_headers(msg.headers)
        super().__init__(msg.data, key=key, headers=headers, id=str(meta.sequence.stream),
                         delivery_count=meta.num_delivered or 1, timestamp=meta.timestamp)
        self._msg = msg

    async def ack(self) -> None:
        await self._msg.ack()

    async def nack(self, delay: float) -> None:
        await self._msg.nak(delay=delay if delay > 0 else None)

    async def extend(self) -> None:
        await self._msg.in_progress()


class JetStreamSubscription(Subscription):
    def __init__(self, psub: JetStreamContext.PullSubscription, max_batch: int) -> None:
        self.psub = psub
        # An orderly group has one unacked message at a time: asking for more would make
        # each fetch wait out its timeout for messages the server will not send yet.
        self.max_batch = max_batch

    async def fetch(self, max_messages: int, timeout: float) -> Sequence[Delivery]:
        try:
            batch = min(max_messages, self.max_batch)
            msgs = await self.psub.fetch(batch=batch, timeout=timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            return ()
        return [JetStreamDelivery(m) for m in msgs]

    async def close(self) -> None:
        try:
            await self.psub.unsubscribe()
        except (nats.errors.Error, *TRANSIENT):
            pass


class JetStreamBackend(NatsBackendBase):
    mode = "jetstream"
    capabilities = Capabilities(
        redelivery=True,
        persistent=True,
        replays_to_new_groups=True,
        consumer_groups=True,
        ordering_by_key=True,
        native_headers=True,
        delayed_redelivery=True,
        deduplication=True,
        ack_deadline=True,
        max_message_size=1024 * 1024,
    )

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, env)
        own = self.nats_settings
        self.ack_extend_interval = own.ack_wait / 3  # type: ignore[misc]
        if own.stream_storage == "memory":
            self.refine_capabilities(persistent=False)
        self.js: JetStreamContext | None = None
        self.ensure_stream: Once[str, str] = Once(self._ensure_stream)
        """The stream that holds a topic: found or created once per process."""

    async def after_connect(self) -> None:
        # One request's wait, well inside send_timeout: a request lost in a server restart
        # times out early enough for the core to send it again.
        attempt = min(self.settings.send_timeout, REQUEST_TIMEOUT)
        self.js = self.connection.jetstream(timeout=attempt)

    @property
    def jetstream(self) -> JetStreamContext:
        assert self.js is not None, "connect() first"
        return self.js

    # -- streams ----------------------------------------------------------------------------

    async def _ensure_stream(self, topic: str) -> str:
        js = self.jetstream
        try:
            try:
                return await js.find_stream_name_by_subject(topic)
            except nats.js.errors.NotFoundError:
                pass
            own = self.nats_settings
            config = StreamConfig(
                name=stream_name(topic),
                subjects=[topic],
                storage=StorageType.FILE if own.stream_storage == "file" else StorageType.MEMORY,
                num_replicas=own.stream_replicas,
                duplicate_window=own.duplicate_window,
            )
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                raise BrokerError(
                    f"JetStream refused to create stream {config.name!r} for topic {topic!r}: "
                    f"{exc.description} (NATS_STREAM_REPLICAS={own.stream_replicas})"
                ) from None
            return str(config.name)
        except TRANSIENT as exc:
            raise BrokerUnavailable(
                f"JetStream did not answer for topic {topic!r}: {exc!r}"
            ) from None
        except nats.js.errors.ServiceUnavailableError as exc:
            raise BrokerUnavailable(f"JetStream is unavailable: {exc!r}") from None

    async def create_topic(self, topic: str, *, orderly: bool = False) -> None:
        await self.ensure_stream(topic)

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        if topic not in self.ensure_stream.done:
            await self.ensure_stream(topic)
        js = self.jetstream
        try:
            if len(messages) == 1:
                message = messages[0]
                await js.publish(topic, message.body, headers=header_block(message))
                return
            # Pipelined on one connection, so the stream keeps the batch's order.
            acks = [
                await js.publish_async(topic, m.body, headers=header_block(m))
                for m in messages
            ]
            await asyncio.gather(*acks)
        except nats.errors.MaxPayloadError as exc:
            raise MessageTooLarge(f"NATS refused the message: {exc}") from None
        except nats.js.errors.APIError as exc:
            if exc.err_code == _MAX_PAYLOAD_ERR:
                raise MessageTooLarge(
                    f"JetStream refused the message: {exc.description}"
                ) from None
            if isinstance(exc, nats.js.errors.ServiceUnavailableError):
                raise BrokerUnavailable(f"JetStream is unavailable: {exc!r}") from None
            raise BrokerError(
                f"JetStream refused a publish to {topic!r}: {exc.description}"
            ) from None
        except nats.errors.NoRespondersError:
            self.ensure_stream.forget(topic)  # the stream may be gone: look it up again
            raise BrokerUnavailable(f"no JetStream stream answered for {topic!r}") from None
        except TRANSIENT as exc:
            raise BrokerUnavailable(f"JetStream publish to {topic!r} failed: {exc!r}") from None

    # -- consuming --------------------------------------------------------------------------

    async def subscribe(self, spec: SubscribeSpec) -> Subscription:
        stream = await self.ensure_stream(spec.topic)
        config = ConsumerConfig(
            durable_name=durable_name(spec.group),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.nats_settings.ack_wait,
            max_deliver=-1,  # the core dead-letters after max_deliveries; the broker never drops
            max_ack_pending=1 if spec.orderly else MAX_ACK_PENDING,
            filter_subject=spec.topic,
        )
        js = self.jetstream
        try:
            await js.add_consumer(stream, config)
            psub = await js.pull_subscribe_bind(
                durable=config.durable_name, stream=stream, pending_msgs_limit=spec.prefetch * 4,
            )
        except nats.js.errors.BadRequestError as exc:
            raise BrokerError(
                f"JetStream refused consumer {config.durable_name!r} on stream {stream!r}: "
                f"{exc.description}"
            ) from None
        except TRANSIENT as exc:
            raise BrokerUnavailable(f"JetStream did not answer: {exc!r}") from None
        return JetStreamSubscription(psub, 1 if spec.orderly else MAX_ACK_PENDING)
