"""pynsq's Reader and Writer, adapted to a core that decides every settle itself.

pynsq 0.9.1 runs on tornado 6, whose IOLoop is the running asyncio loop, so these objects are
created inside the loop and their callbacks run on it (no threads). What is changed:

- the Reader hands every message to a sink with async mode on; pynsq never FINs, REQs or
  gives up on a message by itself (no max_tries, no backoff: the core decides);
- reconnecting: pynsq waits 15 s (Reader without lookupd), refuses a new attempt within 10 s
  of the previous one, or waits for the next lookupd poll. After an nsqd restart that is long,
  so the owner calls ``reconnect_missing()`` periodically, which retries each known nsqd with
  a short backoff;
- a closed Reader or Writer never reconnects (pynsq would resubscribe a closed Reader);
- the errors pynsq logs when we close a connection ourselves are logged at debug level.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import nsq
from nsq import protocol

log = logging.getLogger("cozemq.nsq")

Address = tuple[str, int]
MessageSink = Callable[[Any, Any], None]
"""Called with (AsyncConn, nsq.Message) for every message received."""

RECONNECT_MIN = 0.2
RECONNECT_MAX = 5.0


def error_text(error: object) -> str:
    if isinstance(error, protocol.SendError):
        return f"{error.msg} ({error.error!r})"
    if isinstance(error, bytes):
        return error.decode(errors="replace")
    text = str(error)
    if isinstance(error, protocol.Error) and error.args and isinstance(error.args[0], bytes):
        text = error.args[0].decode(errors="replace")
    return text or type(error).__name__


class _Reconnecting:
    """Per-address reconnect bookkeeping shared by the Reader and the Writer."""

    conns: dict[str, Any]
    closed: bool

    def _init_reconnect(self, addresses: Iterable[Address]) -> None:
        self.closed = False
        self.known: dict[str, Address] = {f"{h}:{p}": (h, p) for h, p in addresses}
        self._pending: dict[str, Any] = {}
        self._next_try: dict[str, tuple[float, float]] = {}
        self.last_error: str | None = None

    def _open_conn(self, host: str, port: int) -> Any:
        raise NotImplementedError

    def reconnect_missing(self) -> None:
        """Connect again to each known nsqd that has no connection (backoff per address)."""
        if self.closed:
            return
        now = time.monotonic()
        for conn_id, (host, port) in self.known.items():
            if conn_id in self.conns:
                self._next_try.pop(conn_id, None)
                continue
            pending = self._pending.get(conn_id)
            if pending is not None and not pending.closed():
                continue  # connecting, or connected and still identifying
            when, pause = self._next_try.get(conn_id, (0.0, RECONNECT_MIN))
            if now < when:
                continue
            self._next_try[conn_id] = (now + pause, min(RECONNECT_MAX, pause * 2))
            self._pending[conn_id] = self._open_conn(host, port)

    def _record_error(self, error: object) -> str:
        """Keep the most telling error: a refusal by nsqd (E_...) is not overwritten by the
        connection-closed noise that follows it."""
        text = error_text(error)
        if text.startswith("E_") or "NSQ_AUTH_SECRET" in text or not (
            self.last_error or "").startswith(("E_", "nsqd requires")):
            self.last_error = text
        return text

    def _check_auth(self, conn: Any, data: Any) -> None:
        """pynsq goes on without AUTH when it has no secret; nsqd then refuses every command."""
        if isinstance(data, dict) and data.get("auth_required") and not conn.auth_secret:
            self.last_error = ("nsqd requires AUTH (it runs with --auth-http-address) and "
                               "NSQ_AUTH_SECRET is not set")
            log.warning("[%s] %s", conn.id, self.last_error)
            conn.cozemq_refused = True  # pynsq still fires READY before the close lands
            conn.close()

    def _remember_ready(self, conn: Any) -> None:
        self.known.setdefault(conn.id, (conn.host, conn.port))
        self._next_try.pop(conn.id, None)


class Reader(_Reconnecting, nsq.Reader):  # type: ignore[misc]
    def __init__(self, topic: str, channel: str, sink: MessageSink, *,
                 nsqd: list[Address], lookupd: list[str], max_in_flight: int,
                 lookupd_poll_interval: int, **conn_kwargs: Any) -> None:
        self._init_reconnect(nsqd)
        self._sink = sink
        self.draining = False
        """Set by the owner while closing: the sink gives messages straight back."""
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        super().__init__(
            topic, channel, message_handler=self._unused_handler,
            nsqd_tcp_addresses=[f"{h}:{p}" for h, p in nsqd],
            lookupd_http_addresses=list(lookupd),
            max_tries=0, max_in_flight=max_in_flight,
            lookupd_poll_interval=lookupd_poll_interval, lookupd_poll_jitter=0.3,
            **conn_kwargs,
        )

    @staticmethod
    def _unused_handler(message: Any) -> None:  # pynsq insists on a handler
        raise AssertionError("messages go to the sink")

    def _open_conn(self, host: str, port: int) -> Any:
        self.connection_attempts.pop(f"{host}:{port}", None)
        return self.connect_to_nsqd(host, port)

    def connect_to_nsqd(self, host: str, port: int) -> Any:
        if self.closed:
            return None
        return super().connect_to_nsqd(host, port)

    def _on_connection_identify_response(self, conn: Any, data: Any, **kwargs: Any) -> None:
        super()._on_connection_identify_response(conn, data, **kwargs)
        self._check_auth(conn, data)

    def _on_message(self, conn: Any, message: Any, **kwargs: Any) -> None:
        self._maybe_update_rdy(conn)
        message.enable_async()
        self._sink(conn, message)

    def _on_connection_ready(self, conn: Any, **kwargs: Any) -> None:
        if getattr(conn, "cozemq_refused", False):
            return
        super()._on_connection_ready(conn, **kwargs)
        if self.conns.get(conn.id) is not conn:
            return  # a duplicate pynsq closed
        self._remember_ready(conn)
        live: Any = conn

        def on_response(data: bytes, **_: Any) -> None:
            live.off("response", on_response)
            if data == b"OK" and not self.subscribed.done():
                self.subscribed.set_result(None)

        live.on("response", on_response)

    def _on_connection_error(self, conn: Any, error: object, **kwargs: Any) -> None:
        if self.closed:
            log.debug("[%s] %s/%s after close: %s", conn.id, self.topic, self.channel,
                      error_text(error))
            return
        log.warning("[%s] nsq reader %s/%s: %s", conn.id, self.topic, self.channel,
                    self._record_error(error))

    def _on_connection_close(self, conn: Any, **kwargs: Any) -> None:
        super()._on_connection_close(conn, **kwargs)
        if not self.closed:
            log.info("[%s] nsq reader %s/%s: connection closed, reconnecting", conn.id,
                     self.topic, self.channel)

    def close(self) -> None:
        self.closed = True
        super().close()


class Writer(_Reconnecting, nsq.Writer):  # type: ignore[misc]
    def __init__(self, nsqd: list[Address], **conn_kwargs: Any) -> None:
        self._init_reconnect(nsqd)
        self.ready = asyncio.Event()
        # pynsq's own reconnect (after every close) stays on, at a short interval
        super().__init__([f"{h}:{p}" for h, p in nsqd], reconnect_interval=0.25, **conn_kwargs)

    def _open_conn(self, host: str, port: int) -> Any:
        return self.connect_to_nsqd(host, port)

    def connect_to_nsqd(self, host: str, port: int) -> Any:
        if self.closed:
            return None
        super().connect_to_nsqd(host, port)
        return None

    def _on_connection_ready(self, conn: Any, **kwargs: Any) -> None:
        if getattr(conn, "cozemq_refused", False):
            return
        super()._on_connection_ready(conn, **kwargs)
        if self.conns.get(conn.id) is conn:
            self._remember_ready(conn)
            self.ready.set()

    def _on_connection_error(self, conn: Any, error: object, **kwargs: Any) -> None:
        if not self.closed:
            log.warning("[%s] nsq writer: %s", conn.id, self._record_error(error))
        while conn.callback_queue:
            callback = conn.callback_queue.pop(0)
            callback(conn, error)

    def _on_connection_close(self, conn: Any, **kwargs: Any) -> None:
        super()._on_connection_close(conn, **kwargs)  # fails its pending callbacks
        if not self.open_conns():
            self.ready.clear()

    def _on_connection_identify_response(self, conn: Any, data: Any, **kwargs: Any) -> None:
        super()._on_connection_identify_response(conn, data, **kwargs)
        self._check_auth(conn, data)

    def open_conns(self) -> list[Any]:
        return [c for c in self.conns.values() if c.connected()]

    async def send(self, command: str, topic: str, payload: Any, timeout: float) -> None:
        """PUB or MPUB, waiting for nsqd's answer; raises ``nsq.Error`` subclasses."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()

        def callback(conn: Any, data: Any) -> None:
            if not answer.done():
                answer.set_result(data)

        getattr(self, command)(topic, payload, callback=callback)
        data = await asyncio.wait_for(answer, timeout)
        if isinstance(data, Exception):
            raise data

    def close(self) -> None:
        self.closed = True
        self.ready.clear()
        for conn in list(self.conns.values()):
            conn.close()
