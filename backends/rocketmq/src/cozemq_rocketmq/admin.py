"""A small asyncio admin client for RocketMQ's remoting protocol: create topics and groups.

The 5.x gRPC clients never create topics, and the admin tool is a JVM (about 5 s a call).
This speaks the broker's own TCP protocol instead, a few milliseconds a call:

    frame  = int32 total length | int32 (serialize type << 24 | header length) | header | body
    header = JSON {code, language, version, opaque, flag, remark, extFields}

Requests go to the name server (which brokers exist, does a topic exist) and to each master
broker (create or update a topic or a subscription group). With ACL 2.0 every request is
signed like the Java AclClientRPCHook: HMAC-SHA1 over the sorted extFields values and the body.

    admin = RocketMQAdmin("127.0.0.1:9876")
    await admin.create_topic("opencoze_knowledge")           # MIXED: keyed and keyless sends
    await admin.create_group("cg_knowledge", orderly=True)   # FIFO consumption per message group
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cozemq.errors import BrokerError, BrokerUnavailable, ConfigurationError

# Request codes (org.apache.rocketmq.remoting.protocol.RequestCode).
UPDATE_AND_CREATE_TOPIC = 17
GET_ROUTEINFO_BY_TOPIC = 105
GET_BROKER_CLUSTER_INFO = 106
UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200

# Response codes.
SUCCESS = 0
TOPIC_NOT_EXIST = 17
NO_PERMISSION = 16

VERSION = 479  # MQVersion.Version.V5_3_3.ordinal()
JSON_SERIALIZE = 0
RESPONSE_FLAG = 1
PERM_READ_WRITE = 6
DEFAULT_QUEUES = 8
GROUP_RETRY_MAX_TIMES = 10_000
"""Retries RocketMQ allows before its own %DLQ%; high, so cozemq's dead-letter decides."""

MESSAGE_TYPES = ("MIXED", "NORMAL", "FIFO")

_INT_KEY = re.compile(r'([{,])\s*(-?\d+)\s*:')


@dataclass(frozen=True)
class RemotingResponse:
    code: int
    remark: str | None
    ext_fields: Mapping[str, str]
    body: bytes

    def json_body(self) -> Any:
        """The body as JSON; fastjson writes integer map keys unquoted, so quote them."""
        if not self.body:
            return None
        return json.loads(_INT_KEY.sub(r'\1"\2":', self.body.decode("utf-8")))


def parse_address(address: str, what: str = "address") -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigurationError(f"{what} {address!r} must be host:port, e.g. 127.0.0.1:9876")
    return host.strip("[]"), int(port)


def encode_frame(header: Mapping[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    marked = (JSON_SERIALIZE << 24) | len(head)
    return struct.pack(">ii", 4 + len(head) + len(body), marked) + head + body


def decode_frame(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """A frame without its leading total-length field."""
    (marked,) = struct.unpack(">i", frame[:4])
    kind, length = (marked >> 24) & 0xFF, marked & 0xFFFFFF
    if kind != JSON_SERIALIZE:
        raise BrokerError(f"RocketMQ answered with serialize type {kind}; only JSON is supported")
    header = json.loads(frame[4:4 + length].decode("utf-8"))
    return header, frame[4 + length:]


def request_blocking(
    address: str, code: int, ext_fields: Mapping[str, str] | None = None, body: bytes = b"",
    *, timeout: float = 2.0,
) -> RemotingResponse:
    """One unsigned request without an event loop (the kit's readiness probe)."""
    header = {"code": code, "language": "PYTHON", "version": VERSION, "opaque": 1, "flag": 0,
              "remark": None, "extFields": {k: str(v) for k, v in (ext_fields or {}).items()},
              "serializeTypeCurrentRPC": "JSON"}
    host, port = parse_address(address)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(encode_frame(header, body))
        (length,) = struct.unpack(">i", _recv_exactly(sock, 4))
        head, payload = decode_frame(_recv_exactly(sock, length))
    return RemotingResponse(code=int(head.get("code", -1)), remark=head.get("remark"),
                            ext_fields=head.get("extFields") or {}, body=payload)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        chunks += chunk
    return bytes(chunks)


def sign(ext_fields: Mapping[str, str], body: bytes, secret_key: str) -> str:
    """ACL signature: HMAC-SHA1 over the values of the fields sorted by name, then the body."""
    content = "".join(str(ext_fields[k]) for k in sorted(ext_fields)).encode("utf-8") + body
    digest = hmac.new(secret_key.encode("utf-8"), content, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class RocketMQAdmin:
    """Topic and group administration through the name server and the master brokers.

    ``broker_addresses`` skips the name server lookup (e.g. a kit that knows its broker).
    """

    def __init__(
        self,
        namesrv: str | None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        cluster: str | None = None,
        broker_addresses: list[str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not namesrv and not broker_addresses:
            raise ConfigurationError(
                "RocketMQ administration needs the name server address: set RMQ_NAMESRV_ADDR "
                "(e.g. 127.0.0.1:9876)"
            )
        self.namesrvs = [a.strip() for a in (namesrv or "").split(";") if a.strip()]
        for address in self.namesrvs:
            parse_address(address, "name server")
        self.access_key = access_key or None
        self._secret_key = secret_key or ""
        self.cluster = cluster
        self._brokers = list(broker_addresses or [])
        self.timeout = timeout
        self._opaque = itertools.count(1)

    def __repr__(self) -> str:
        return f"<RocketMQAdmin namesrv={';'.join(self.namesrvs) or '-'}>"

    # -- the wire ---------------------------------------------------------------------------

    async def request(
        self, address: str, code: int, ext_fields: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> RemotingResponse:
        """One request on a fresh connection (admin calls are rare; no pooling)."""
        fields = {k: str(v) for k, v in (ext_fields or {}).items()}
        if self.access_key:
            fields["AccessKey"] = self.access_key
            fields["Signature"] = sign(fields, body, self._secret_key)
        opaque = next(self._opaque)
        header = {"code": code, "language": "PYTHON", "version": VERSION, "opaque": opaque,
                  "flag": 0, "remark": None, "extFields": fields,
                  "serializeTypeCurrentRPC": "JSON"}
        host, port = parse_address(address)
        try:
            return await asyncio.wait_for(self._exchange(host, port, header, body), self.timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            raise BrokerUnavailable(
                f"RocketMQ at {address} did not answer request code {code} within "
                f"{self.timeout:g}s: {exc!r}"
            ) from None

    async def _exchange(
        self, host: str, port: int, header: Mapping[str, Any], body: bytes
    ) -> RemotingResponse:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(encode_frame(header, body))
            await writer.drain()
            while True:
                (length,) = struct.unpack(">i", await reader.readexactly(4))
                head, payload = decode_frame(await reader.readexactly(length))
                if head.get("flag", 0) & RESPONSE_FLAG and head.get("opaque") == header["opaque"]:
                    return RemotingResponse(
                        code=int(head.get("code", -1)), remark=head.get("remark"),
                        ext_fields=head.get("extFields") or {}, body=payload,
                    )
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _namesrv_request(
        self, code: int, ext_fields: Mapping[str, str] | None = None
    ) -> RemotingResponse:
        last: Exception | None = None
        for address in self.namesrvs:
            try:
                return await self.request(address, code, ext_fields)
            except BrokerUnavailable as exc:
                last = exc
        if last is None:
            raise ConfigurationError("no name server configured (RMQ_NAMESRV_ADDR)")
        raise last

    # -- queries ----------------------------------------------------------------------------

    async def cluster_info(self) -> dict[str, Any]:
        """The name server's ClusterInfo: brokerAddrTable and clusterAddrTable."""
        response = await self._namesrv_request(GET_BROKER_CLUSTER_INFO)
        _check(response, "GET_BROKER_CLUSTER_INFO")
        info = response.json_body() or {}
        return dict(info)

    async def master_brokers(self) -> list[str]:
        """Addresses of the master (brokerId 0) of every broker (of ``cluster`` if set)."""
        if self._brokers:
            return list(self._brokers)
        info = await self.cluster_info()
        names: set[str] | None = None
        if self.cluster:
            names = set((info.get("clusterAddrTable") or {}).get(self.cluster) or [])
        masters = []
        for name, data in sorted((info.get("brokerAddrTable") or {}).items()):
            if names is not None and name not in names:
                continue
            address = (data.get("brokerAddrs") or {}).get("0")
            if address:
                masters.append(str(address))
        if not masters:
            raise BrokerUnavailable(
                "the RocketMQ name server knows no master broker"
                + (f" in cluster {self.cluster!r}" if self.cluster else "")
                + " yet (is the broker running and registered?)"
            )
        return masters

    async def topic_exists(self, topic: str) -> bool:
        response = await self._namesrv_request(GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
        if response.code == TOPIC_NOT_EXIST:
            return False
        _check(response, f"GET_ROUTEINFO_BY_TOPIC {topic}")
        return True

    # -- changes ----------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        fifo: bool = False,
        *,
        message_type: str | None = None,
        queues: int = DEFAULT_QUEUES,
    ) -> None:
        """Create (or update) ``name`` on every master broker. Idempotent.

        The message type is MIXED by default, so keyed (FIFO, message group) and keyless
        (NORMAL) sends both pass the 5.x type check; ``fifo=True`` makes a FIFO-only topic
        (also marked ordered) and ``message_type`` sets any type explicitly.
        """
        kind = (message_type or ("FIFO" if fifo else "MIXED")).upper()
        if kind not in MESSAGE_TYPES:
            raise ConfigurationError(f"message type {kind!r}: use one of {MESSAGE_TYPES}")
        fields = {
            "topic": name,
            "defaultTopic": "TBW102",
            "readQueueNums": str(queues),
            "writeQueueNums": str(queues),
            "perm": str(PERM_READ_WRITE),
            "topicFilterType": "SINGLE_TAG",
            "topicSysFlag": "0",
            "order": "true" if fifo else "false",
            "attributes": f"+message.type={kind}",
        }
        for broker in await self.master_brokers():
            response = await self.request(broker, UPDATE_AND_CREATE_TOPIC, fields)
            _check(response, f"creating topic {name!r} on {broker}")

    async def create_group(
        self, name: str, orderly: bool = False, *, retry_max_times: int = GROUP_RETRY_MAX_TIMES
    ) -> None:
        """Create (or update) subscription group ``name`` on every master broker. Idempotent.

        ``orderly=True`` sets consumeMessageOrderly: a FIFO group, which receives one message
        group's messages in order, the next only after the previous is acknowledged.
        """
        config = {
            "groupName": name,
            "consumeEnable": True,
            "consumeFromMinEnable": True,
            "consumeBroadcastEnable": True,
            "consumeMessageOrderly": orderly,
            "retryQueueNums": 1,
            "retryMaxTimes": retry_max_times,
            "brokerId": 0,
            "whichBrokerWhenConsumeSlowly": 1,
            "notifyConsumerIdsChangedEnable": True,
        }
        body = json.dumps(config).encode("utf-8")
        for broker in await self.master_brokers():
            response = await self.request(broker, UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body=body)
            _check(response, f"creating group {name!r} on {broker}")


def _check(response: RemotingResponse, what: str) -> None:
    if response.code == SUCCESS:
        return
    remark = (response.remark or "").strip()
    if response.code == NO_PERMISSION or "authenticat" in remark.lower() or (
        "authoriz" in remark.lower()
    ):
        raise BrokerError(
            f"RocketMQ refused {what}: {remark or response.code} (check RMQ_ACCESS_KEY/"
            "RMQ_SECRET_KEY; creating topics and groups needs an admin user)"
        )
    raise BrokerError(f"RocketMQ refused {what}: code {response.code}: {remark}")


__all__ = ["RemotingResponse", "RocketMQAdmin", "request_blocking", "sign"]
