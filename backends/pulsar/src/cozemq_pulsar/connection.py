"""Turning settings into pulsar-client options: the service URL, token auth, TLS; topic names."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

import pulsar

from cozemq.errors import ConfigurationError, InvalidArgument

from .settings import PulsarSettings

SCHEMES = ("pulsar", "pulsar+ssl")

# Pulsar's rule for tenant, namespace and topic local names (NamedEntity): word characters,
# '-', '=', ':' and '.'. A '/' would change the meaning of the full name.
_NAME = re.compile(r"^[-=:.\w]+$", re.ASCII)


def parse_service_url(raw: str, source: str = "MQ_NAME_SERVER") -> str:
    """pulsar://host:port, pulsar+ssl://host:port, or bare host:port (gets pulsar://).

    A comma-separated host list inside one URL (pulsar://h1:6650,h2:6650) is Pulsar's own
    multi-host form and is kept.
    """
    url = raw.strip()
    if not url:
        raise ConfigurationError(
            f"{source} is empty; set it to the Pulsar broker, e.g. pulsar://127.0.0.1:6650"
        )
    if "://" not in url:
        url = "pulsar://" + url
    scheme, _, rest = url.partition("://")
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"{source}: {url!r} has scheme {scheme!r}; allowed: pulsar://host:port, "
            "pulsar+ssl://host:port or host:port"
        )
    if "@" in rest:
        raise ConfigurationError(
            f"{source}: credentials do not go in the URL; use PULSAR_JWT_TOKEN"
        )
    rest = rest.rstrip("/")
    if not rest or "/" in rest or "?" in rest:
        raise ConfigurationError(f"{source}: {url!r} must be scheme://host:port only")
    for host in rest.split(","):
        parts = urlsplit(f"{scheme}://{host}")
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError(f"{source}: {url!r} has an invalid port") from None
        if not parts.hostname:
            raise ConfigurationError(
                f"{source}: {url!r} has no host, e.g. pulsar://127.0.0.1:6650"
            )
        if port is None:
            raise ConfigurationError(
                f"{source}: {url!r} has no port (the broker's is usually 6650, 6651 for TLS)"
            )
    return f"{scheme}://{rest}"


def check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise InvalidArgument(
            f"{kind} {name!r}: Pulsar names may hold only letters, digits, '_', '-', '=', ':' "
            "and '.' (no whitespace or '/'), e.g. 'opencoze_knowledge'"
        )


def namespace_of(s: PulsarSettings) -> str:
    try:
        check_name("PULSAR_TENANT", s.tenant)
        check_name("PULSAR_NAMESPACE", s.namespace)
    except InvalidArgument as exc:
        raise ConfigurationError(str(exc)) from None
    return f"{s.tenant}/{s.namespace}"


def client_options(s: PulsarSettings, url: str) -> dict[str, Any]:
    """Keyword arguments for pulsar.Client besides the URL and the logger."""
    options: dict[str, Any] = {}
    if s.jwt_token is not None:
        token = s.jwt_token.get_secret_value().strip()
        if not token:
            raise ConfigurationError("PULSAR_JWT_TOKEN is set but empty")
        options["authentication"] = pulsar.AuthenticationToken(token)
    uses_tls = url.startswith("pulsar+ssl://")
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        raise ConfigurationError(
            "PULSAR_TLS_CERT_FILE and PULSAR_TLS_KEY_FILE must be set together"
        )
    for variable, path in (("PULSAR_TLS_CA_FILE", s.tls_ca_file),
                           ("PULSAR_TLS_CERT_FILE", s.tls_cert_file),
                           ("PULSAR_TLS_KEY_FILE", s.tls_key_file)):
        if path and not os.path.isfile(path):
            raise ConfigurationError(f"{variable}: {path!r} is not a readable file")
    if (s.tls_ca_file or s.tls_cert_file) and not uses_tls:
        raise ConfigurationError(
            "PULSAR_TLS_* files are set but MQ_NAME_SERVER is not a pulsar+ssl:// URL"
        )
    if uses_tls:
        options["use_tls"] = True
        options["tls_allow_insecure_connection"] = s.tls_allow_insecure
        options["tls_validate_hostname"] = s.tls_validate_hostname
        if s.tls_ca_file:
            options["tls_trust_certs_file_path"] = s.tls_ca_file
        if s.tls_cert_file and s.tls_key_file:
            options["tls_certificate_file_path"] = s.tls_cert_file
            options["tls_private_key_file_path"] = s.tls_key_file
    return options
