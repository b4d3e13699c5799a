"""Each kit's broker serves a raw client of that broker (not cozemq), and survives a crash."""

from __future__ import annotations

import asyncio

import nats
from cozemq_nats.kit import NatsKit

from cozemq.kit import BrokerKit


async def test_raw_nats_client_round_trip_on_the_kit(nats_kit: BrokerKit) -> None:
    nc = await nats.connect(nats_kit.env()["MQ_NAME_SERVER"], connect_timeout=2)
    try:
        sub = await nc.subscribe("raw_kit_check")
        await nc.publish("raw_kit_check", b"raw")
        message = await sub.next_msg(timeout=5)
        assert message.data == b"raw"
        js = nc.jetstream()
        await js.add_stream(name="raw_kit_stream", subjects=["raw_kit_stream"])
        ack = await js.publish("raw_kit_stream", b"stored")
        assert ack.seq >= 1
    finally:
        await nc.close()


async def test_kit_restart_keeps_ports_and_jetstream_data() -> None:
    kit = NatsKit()
    kit.start()
    try:
        url = kit.url
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="restart_check", subjects=["restart_check"])
        await js.publish("restart_check", b"before crash")
        await nc.close()
        await asyncio.to_thread(kit.restart, kill=True)
        assert kit.url == url
        nc = await nats.connect(url)
        info = await nc.jetstream().stream_info("restart_check")
        assert info.state.messages == 1
        await nc.close()
    finally:
        kit.stop()
    assert not kit.alive()
