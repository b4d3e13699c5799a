"""NSQ has no headers: key and headers travel in a small versioned envelope around the body.

Layout (all integers big-endian)::

    magic    7 bytes  b"\\x00cozemq"
    version  1 byte   1
    flags    1 byte   bit 0: a key follows
    [key     u32 length + UTF-8 bytes]          only with flag bit 0
    count    u16      number of headers
    count x  u16 length + UTF-8 name, u32 length + UTF-8 value
    body     u32 length + bytes, and nothing after it

A message with neither key nor headers is sent as its plain body, unless that body is empty
(nsqd refuses empty messages) or itself starts with the magic: then it is wrapped (no key, no
headers) so that it comes back unchanged.
On receipt only a body that starts with the magic *and* parses completely is unwrapped; any
other body (a foreign producer's, or a corrupted envelope) is delivered as it is.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

MAGIC = b"\x00cozemq"
VERSION = 1
_FLAG_KEY = 0x01
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

OVERHEAD = len(MAGIC) + 1 + 1 + _U16.size + _U32.size
"""Bytes an envelope adds around a body with neither key nor headers."""


def needs_envelope(body: bytes, key: str | None, headers: Mapping[str, str] | None) -> bool:
    return key is not None or bool(headers) or not body or body.startswith(MAGIC)


def encoded_size(body: bytes, key: str | None, headers: Mapping[str, str] | None) -> int:
    """What the message weighs on the wire (nsqd counts it against --max-msg-size)."""
    if not needs_envelope(body, key, headers):
        return len(body)
    size = OVERHEAD + len(body)
    if key is not None:
        size += _U32.size + len(key.encode())
    for name, value in (headers or {}).items():
        size += _U16.size + len(name.encode()) + _U32.size + len(value.encode())
    return size


def encode(body: bytes, key: str | None = None,
           headers: Mapping[str, str] | None = None) -> bytes:
    if not needs_envelope(body, key, headers):
        return body
    parts = [MAGIC, bytes((VERSION, _FLAG_KEY if key is not None else 0))]
    if key is not None:
        raw = key.encode()
        parts += [_U32.pack(len(raw)), raw]
    items = list((headers or {}).items())
    parts.append(_U16.pack(len(items)))
    for name, value in items:
        raw_name, raw_value = name.encode(), value.encode()
        parts += [_U16.pack(len(raw_name)), raw_name, _U32.pack(len(raw_value)), raw_value]
    parts += [_U32.pack(len(body)), body]
    return b"".join(parts)


def decode(data: bytes) -> tuple[bytes, str | None, dict[str, str]]:
    """(body, key, headers); anything that is not a complete envelope is a plain body."""
    if not data.startswith(MAGIC):
        return data, None, {}
    try:
        return _parse(memoryview(data))
    except (ValueError, struct.error, UnicodeDecodeError):
        return data, None, {}


def _parse(view: memoryview) -> tuple[bytes, str | None, dict[str, str]]:
    pos = len(MAGIC)
    if len(view) < OVERHEAD or view[pos] != VERSION or view[pos + 1] & ~_FLAG_KEY:
        raise ValueError("not an envelope")
    flags = view[pos + 1]
    pos += 2

    def take(size: int) -> memoryview:
        nonlocal pos
        if pos + size > len(view):
            raise ValueError("truncated")
        chunk = view[pos:pos + size]
        pos += size
        return chunk

    key = None
    if flags & _FLAG_KEY:
        key = bytes(take(_U32.unpack(take(_U32.size))[0])).decode()
    headers: dict[str, str] = {}
    for _ in range(_U16.unpack(take(_U16.size))[0]):
        name = bytes(take(_U16.unpack(take(_U16.size))[0])).decode()
        headers[name] = bytes(take(_U32.unpack(take(_U32.size))[0])).decode()
    body = bytes(take(_U32.unpack(take(_U32.size))[0]))
    if pos != len(view):
        raise ValueError("trailing bytes")
    return body, key, headers
