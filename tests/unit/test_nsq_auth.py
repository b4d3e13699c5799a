"""nsqd with --auth-http-address: AUTH with NSQ_AUTH_SECRET is checked by an auth server (a
small one runs inside this test, as nsqd delegates every decision to an HTTP endpoint)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from cozemq_nsq.kit import NsqKit

import cozemq
from cozemq.testing.tally import Tally, payload

SECRET = "s3cret-nsq-auth-value"


class _Authd(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        if query.get("secret") != [SECRET]:
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps({"ttl": 3600, "identity": "cozemq-test", "authorizations": [
            {"topic": ".*", "channels": [".*"], "permissions": ["subscribe", "publish"]}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def auth_kit() -> Iterator[NsqKit]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Authd)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kit = NsqKit(extra_args=[f"--auth-http-address=127.0.0.1:{server.server_address[1]}"])
    kit.start()
    try:
        yield kit
    finally:
        kit.stop()
        server.shutdown()


async def test_the_right_secret_publishes_and_consumes(auth_kit: NsqKit) -> None:
    env = {**auth_kit.env(), "NSQ_AUTH_SECRET": SECRET}
    async with cozemq.EventBus.from_env(env) as bus:
        tally = Tally()
        await bus.register_consumer("authed", "g", tally)
        await bus.send_message("authed", payload("a", 0), key="k", headers={"h": "v"})
        await tally.wait_for(1, 10)
        assert tally.messages[0].key == "k"


@pytest.mark.parametrize("secret", [None, "wrong-secret-value"])
async def test_a_missing_or_wrong_secret_is_refused_clearly(
    auth_kit: NsqKit, secret: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {**auth_kit.env(), "COZEMQ_CONNECT_TIMEOUT": "2"}
    if secret:
        env["NSQ_AUTH_SECRET"] = secret
    bus = cozemq.EventBus.from_env(env)
    with pytest.raises(cozemq.BrokerUnavailable, match="NSQ_AUTH_SECRET") as caught:
        await bus.connect()
    await bus.close()
    if secret:
        assert secret not in str(caught.value) and secret not in caplog.text
