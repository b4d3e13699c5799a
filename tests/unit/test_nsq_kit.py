"""The NSQ kit's daemons serve pynsq directly (not cozemq), and nsqd survives a crash with its
ports, its topics and channels, and what was queued (with the kit's disk-queue flags)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import nsq
from cozemq_nsq.kit import NsqKit


def _channel_depth(kit: NsqKit, topic: str, channel: str) -> int | None:
    url = f"http://{kit.nsqd_http}/stats?format=json&topic={topic}&channel={channel}"
    with urllib.request.urlopen(url, timeout=2) as response:
        stats = json.load(response)
    for t in stats.get("topics", []):
        if t["topic_name"] == topic:
            for c in t["channels"]:
                if c["channel_name"] == channel:
                    return int(c["depth"])
    return None


async def test_raw_pynsq_round_trip_through_lookupd_on_the_kit(nsq_kit: NsqKit) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()
    writer = nsq.Writer([nsq_kit.nsqd_tcp])
    reader = None
    try:
        for _ in range(200):  # the Writer connects in the background
            if writer.conns:
                break
            await asyncio.sleep(0.01)
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        writer.pub("raw_kit_check", b"raw", callback=lambda _c, data: done.set_result(data))
        assert await asyncio.wait_for(done, 5) == b"OK"

        def handler(message: nsq.Message) -> bool:
            received.put_nowait(message.body)
            return True

        reader = nsq.Reader("raw_kit_check", "ch", message_handler=handler,
                            lookupd_http_addresses=[nsq_kit.lookupd_http],
                            lookupd_poll_interval=1, lookupd_poll_jitter=0.0)
        assert await asyncio.wait_for(received.get(), 10) == b"raw"
    finally:
        if reader is not None:
            reader.close()
        for conn in list(writer.conns.values()):
            conn.close()


def test_kit_restart_after_sigkill_keeps_ports_and_queued_messages() -> None:
    kit = NsqKit()
    kit.start()
    try:
        ports = dict(kit.ports)
        data = b"\n".join(b"m%d" % i for i in range(20))
        for path in ("topic/create?topic=kept", "channel/create?topic=kept&channel=ch"):
            post = urllib.request.Request(f"http://{kit.nsqd_http}/{path}", method="POST")
            urllib.request.urlopen(post, timeout=2).close()
        mpub = urllib.request.Request(f"http://{kit.nsqd_http}/mpub?topic=kept", data=data,
                                      method="POST")
        urllib.request.urlopen(mpub, timeout=2).close()
        assert _channel_depth(kit, "kept", "ch") == 20
        old_pid = kit.pid
        time.sleep(1.0)  # 10x the kit's --sync-timeout=100ms
        kit.restart(kill=True)
        assert kit.ports == ports and kit.pid != old_pid
        assert kit.lookupd_alive(), "nsqlookupd keeps running across an nsqd crash"
        # The disk queue keeps what its last sync recorded: nsqd's default in-memory queue
        # would keep nothing. Measured here: usually all 20, sometimes 14-17 (docs/backends/nsq.md).
        assert 10 <= _channel_depth(kit, "kept", "ch") <= 20
    finally:
        kit.stop()
    assert not kit.alive() and not kit.lookupd_alive()
