"""Settings to aiokafka options: the bootstrap list, SASL and TLS; client errors to cozemq's."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from aiokafka import errors as ke
from aiokafka.helpers import create_ssl_context

from cozemq.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    EventBusError,
    MessageTooLarge,
)

from .settings import KafkaSettings

DEFAULT_PORT = 9092
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>[0-9]+))?$")


def parse_bootstrap(raw: str | None) -> list[str]:
    """MQ_NAME_SERVER as Kafka's bootstrap list: "host:port[,host:port...]".

    Coze passes the variable to its client whole; here it is split. A missing port is 9092; a
    scheme such as kafka:// or PLAINTEXT:// is tolerated and dropped.
    """
    if raw is None or not raw.strip():
        raise ConfigurationError(
            "MQ_NAME_SERVER is not set; for kafka it is the bootstrap list, e.g. "
            "127.0.0.1:9092 or broker1:9092,broker2:9092"
        )
    servers = []
    for item in raw.split(","):
        entry = item.strip()
        if not entry:
            raise ConfigurationError(f"MQ_NAME_SERVER: empty entry in the bootstrap list {raw!r}")
        if "://" in entry:
            entry = entry.split("://", 1)[1].rstrip("/")
        if "@" in entry:
            raise ConfigurationError(
                "MQ_NAME_SERVER: credentials do not belong in the bootstrap list; use "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        match = _HOST_PORT.match(entry)
        if match is None:
            raise ConfigurationError(
                f"MQ_NAME_SERVER: {item.strip()!r} is not host:port (e.g. 127.0.0.1:9092)"
            )
        port = int(match["port"]) if match["port"] else DEFAULT_PORT
        if not 0 < port < 65536:
            raise ConfigurationError(f"MQ_NAME_SERVER: {item.strip()!r} has an invalid port")
        servers.append(f"{match['host']}:{port}")
    return servers


def security_options(s: KafkaSettings) -> dict[str, Any]:
    """aiokafka's security_protocol, sasl_* and ssl_context arguments."""
    tls = bool(s.tls_ca_file or s.tls_cert_file)
    protocol = s.security_protocol or (
        ("SASL_SSL" if tls else "SASL_PLAINTEXT") if s.sasl_mechanism else
        ("SSL" if tls else "PLAINTEXT")
    )
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        if s.sasl_mechanism is None:
            raise ConfigurationError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM "
                "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )
        if not s.sasl_username or s.sasl_password is None:
            raise ConfigurationError(
                f"KAFKA_SASL_MECHANISM={s.sasl_mechanism} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        options.update(sasl_mechanism=s.sasl_mechanism, sasl_plain_username=s.sasl_username,
                       sasl_plain_password=s.sasl_password.get_secret_value())
    elif s.sasl_mechanism is not None:
        raise ConfigurationError(
            f"KAFKA_SASL_MECHANISM is set but KAFKA_SECURITY_PROTOCOL={protocol} has no SASL; "
            "use SASL_PLAINTEXT or SASL_SSL (or leave it unset)"
        )
    if protocol.endswith("SSL"):
        for name, path in (("KAFKA_TLS_CA_FILE", s.tls_ca_file),
                           ("KAFKA_TLS_CERT_FILE", s.tls_cert_file),
                           ("KAFKA_TLS_KEY_FILE", s.tls_key_file)):
            if path and not os.path.isfile(path):
                raise ConfigurationError(f"{name}: {path!r} is not a readable file")
        if s.tls_key_file and not s.tls_cert_file:
            raise ConfigurationError("KAFKA_TLS_KEY_FILE is set without KAFKA_TLS_CERT_FILE")
        try:
            options["ssl_context"] = create_ssl_context(
                cafile=s.tls_ca_file, certfile=s.tls_cert_file, keyfile=s.tls_key_file,
                password=s.tls_key_password.get_secret_value() if s.tls_key_password else None,
            )
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"KAFKA_TLS_*: could not load the TLS files: {type(exc).__name__}"
            ) from None
    elif tls:
        raise ConfigurationError(
            f"KAFKA_TLS_* files are set but KAFKA_SECURITY_PROTOCOL={protocol} has no TLS; "
            "use SSL or SASL_SSL (or leave it unset)"
        )
    return options


def translate(exc: BaseException, doing: str) -> EventBusError:
    """An aiokafka error as the cozemq error a caller can act on (never with a secret)."""
    if isinstance(exc, EventBusError):
        return exc
    text = f"kafka: {doing}: {type(exc).__name__}: {exc}"
    if isinstance(exc, ke.MessageSizeTooLargeError | ke.RecordTooLargeError):
        return MessageTooLarge(
            text + " (the broker's message.max.bytes; set KAFKA_MAX_MESSAGE_BYTES to match it "
            "so sizes are checked before anything is sent)"
        )
    if isinstance(exc, ke.SaslAuthenticationFailed | ke.AuthenticationFailedError |
                  ke.UnsupportedSaslMechanismError | ke.IllegalSaslStateError):
        return BrokerError(text)
    if isinstance(exc, ke.TopicAuthorizationFailedError | ke.GroupAuthorizationFailedError |
                  ke.ClusterAuthorizationFailedError | ke.TransactionalIdAuthorizationFailed):
        return BrokerError(text + " (not authorized: check the broker's ACLs)")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | OSError):
        return BrokerUnavailable(text)
    if isinstance(exc, ke.KafkaError) and (
        exc.retriable or isinstance(exc, ke.KafkaConnectionError | ke.KafkaTimeoutError |
                                    ke.NoBrokersAvailable | ke.NodeNotReadyError |
                                    ke.RequestTimedOutError)
    ):
        return BrokerUnavailable(text)
    return BrokerError(text)
