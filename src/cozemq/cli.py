"""The `cozemq` command: publish, subscribe, check a setup, run the demo, run local brokers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import registry
from .bus import EventBus
from .errors import EventBusError
from .kit import RUN_DIR, BrokerKit, KitError
from .message import Message
from .settings import Settings, load_settings, masked

console = Console()
err = Console(stderr=True)


def _interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so a broker a command started is stopped on the way out."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main() -> None:
    _interrupt_on_sigterm()
    try:
        cli(standalone_mode=True)
    except EventBusError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


@click.group()
@click.version_option(package_name="cozemq")
def cli() -> None:
    """cozemq: Coze Studio's event bus, one contract over many brokers (COZE_MQ_TYPE)."""


def _body(data: str) -> bytes:
    if data == "-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        return Path(data[1:]).read_bytes()
    return data.encode()


def _pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: use NAME=VALUE", param_hint=option)
        out[name] = value
    return out


@cli.command()
@click.argument("topic")
@click.argument("data")
@click.option("--key", help="Sharding key.")
@click.option("--header", "-H", multiple=True, help="NAME=VALUE, repeatable.")
@click.option("--count", default=1, show_default=True, help="Send DATA this many times.")
def pub(topic: str, data: str, key: str | None, header: tuple[str, ...], count: int) -> None:
    """Send DATA (text, @file, or - for stdin) to TOPIC."""
    body, headers = _body(data), _pairs(header, "--header")

    async def run() -> None:
        async with EventBus.from_env() as bus:
            for _ in range(count):
                await bus.send_message(topic, body, key=key, headers=headers or None)

    asyncio.run(run())
    err.print(f"sent {count} message(s) to {topic}")


@cli.command()
@click.argument("topic")
@click.option("--group", "-g", required=True, help="Consumer group.")
@click.option("--count", type=int, help="Exit after this many messages.")
@click.option("--timeout", type=float, help="Exit after this many seconds.")
@click.option("--orderly", is_flag=True, help="One message per key at a time, in order.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
def sub(topic: str, group: str, count: int | None, timeout: float | None, orderly: bool,
        as_json: bool) -> None:
    """Print messages from TOPIC as a member of GROUP (Ctrl-C to stop)."""

    async def run() -> int:
        seen = 0
        done = asyncio.Event()

        async def show(message: Message) -> None:
            nonlocal seen
            seen += 1
            if as_json:
                print(json.dumps({
                    "topic": message.topic, "group": message.group, "id": message.id,
                    "key": message.key, "attempt": message.attempt,
                    "headers": dict(message.headers),
                    "body": message.body.decode(errors="replace"),
                }), flush=True)
            else:
                key = f" key={message.key}" if message.key else ""
                console.print(f"[dim]{message.id}{key}[/dim] "
                              f"{message.body.decode(errors='replace')}", markup=False)
            if count is not None and seen >= count:
                done.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        async with EventBus.from_env() as bus:
            await bus.register_consumer(topic, group, show, orderly=orderly,
                                        concurrency=1 if count else None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)
        return seen

    seen = asyncio.run(run())
    err.print(f"received {seen} message(s)")


@cli.command()
def doctor() -> None:
    """Show the resolved configuration (secrets masked) and check the broker answers."""
    settings = load_settings(Settings)
    table = Table(title="cozemq configuration", show_header=True)
    table.add_column("variable")
    table.add_column("value")
    for name, value in masked(settings).items():
        table.add_row(name, value)
    backend_cls = registry.backend_class(settings.mq_type)
    bus = EventBus(backend_cls(settings, None), settings)
    for name, value in bus.backend.shown_settings().items():
        table.add_row(name, value)
    console.print(table)
    console.print(f"backend: [bold]{bus.backend.describe()}[/bold]")
    caps = bus.capabilities
    console.print("capabilities: " + ", ".join(
        f"{k}={v}" for k, v in caps.__dict__.items()))

    async def check() -> float:
        started = time.perf_counter()
        async with bus:
            await bus.backend.ping()
        return time.perf_counter() - started

    elapsed = asyncio.run(check())
    console.print(f"[green]ok[/green]: connected and pinged in {elapsed * 1000:.1f} ms")


# -- demo -----------------------------------------------------------------------------------


@cli.command()
@click.option("--messages", default=2000, show_default=True)
def demo(messages: int) -> None:
    """The main job: a producer and two consumer groups on the configured broker, or on a
    local nats-server started from the installed package when none is configured."""
    settings = load_settings(Settings)
    kit: BrokerKit | None = None
    env: dict[str, str] = {}
    if not settings.mq_type:
        kit = registry.kit_class("nats")()
        err.print("COZE_MQ_TYPE is not set: starting a local nats-server (JetStream)...")
        kit.start()
        env = kit.env()
    try:
        asyncio.run(_demo(env, messages))
    finally:
        if kit is not None:
            kit.stop()


async def _demo(env: Mapping[str, str], total: int) -> None:
    topic = f"demo_{int(time.time())}"
    latencies: dict[str, list[float]] = {"indexer": [], "search": []}
    done = {group: asyncio.Event() for group in latencies}

    def handler(group: str) -> Any:
        async def handle(message: Message) -> None:
            sent_at = float(message.headers["sent-at"])
            latencies[group].append(time.time() - sent_at)
            if len(latencies[group]) >= total:
                done[group].set()
        return handle

    async with EventBus.from_env(env) as bus:
        console.print(f"broker: [bold]{bus.backend.describe()}[/bold]")
        for group in latencies:
            await bus.register_consumer(topic, group, handler(group), concurrency=32)
        started = time.perf_counter()
        producer = bus.producer(topic)
        for i in range(total):
            await producer.send(json.dumps({"doc": i}).encode(), sharding_key=f"doc-{i % 16}",
                                headers={"sent-at": repr(time.time())})
        sent_in = time.perf_counter() - started
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in done.values())), 120)
        total_time = time.perf_counter() - started

    table = Table(title=f"demo: {total} messages to {topic}, two consumer groups")
    for column in ("group", "received", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    for group, values in latencies.items():
        ms = sorted(v * 1000 for v in values)
        table.add_row(group, str(len(ms)), f"{statistics.median(ms):.2f}",
                      f"{ms[int(len(ms) * 0.99) - 1]:.2f}", f"{ms[-1]:.2f}")
    console.print(table)
    console.print(f"sent in {sent_in:.2f}s ({total / sent_in:,.0f} msg/s); all received by "
                  f"both groups in {total_time:.2f}s")


# -- topics -----------------------------------------------------------------------------------


@cli.group()
def topic() -> None:
    """Manage topics on brokers that need them created ahead of use."""


@topic.command("create")
@click.argument("names", nargs=-1, required=True)
@click.option("--orderly", "--fifo", is_flag=True,
              help="A topic that keeps order per sharding key (RocketMQ: FIFO).")
def topic_create(names: tuple[str, ...], orderly: bool) -> None:
    """Create topics NAMES on the configured broker (idempotent)."""

    async def run() -> None:
        async with EventBus.from_env() as bus:
            for name in names:
                await bus.create_topic(name, orderly=orderly)
                err.print(f"created {name}" + (" (orderly)" if orderly else ""))

    asyncio.run(run())


# -- bench ----------------------------------------------------------------------------------


@cli.command()
@click.option("--broker", help="Start this broker's local kit (nats, kafka, ...) and bench it; "
              "otherwise the configured broker (COZE_MQ_TYPE, MQ_NAME_SERVER) is used.")
@click.option("--workload", "-w", "workloads", multiple=True,
              help="A built-in workload name or a TOML file; repeatable (default: all).")
@click.option("--drivers", help="Comma-separated: cozemq, raw, faststream (default: all).")
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds per driver.")
@click.option("--count", type=int, help="Override every workload's message_count.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write results here.")
@click.option("--png", "png_path", type=click.Path(path_type=Path), help="Write a chart here.")
@click.option("--smoke", is_flag=True, help="One quick round of the smoke workload.")
@click.option("--set", "overrides", multiple=True, metavar="NAME=VALUE",
              help="A setting on top of the broker's, e.g. NATS_USE_JETSTREAM=false.")
def bench(broker: str | None, workloads: tuple[str, ...], drivers: str | None, rounds: int,
          count: int | None, json_path: Path | None, png_path: Path | None, smoke: bool,
          overrides: tuple[str, ...]) -> None:
    """Measure cozemq against the broker's raw client (and FastStream), side by side."""
    from dataclasses import replace

    from .bench import drivers_for, load_workload, workload_names
    from .bench.report import print_report, write_chart, write_json

    names = ["smoke"] if smoke else list(workloads) or [
        n for n in workload_names() if n != "smoke"]
    chosen = [load_workload(n) for n in names]
    if count:
        chosen = [replace(w, message_count=count) for w in chosen]
    rounds = 1 if smoke else rounds
    kit: BrokerKit | None = None
    env: dict[str, str] = {}
    if broker:
        kit = registry.kit_class(broker)()
        err.print(f"starting a local {kit.name} broker...")
        kit.start()
        env = kit.env()
    env.update(_pairs(overrides, "--set"))
    try:
        settings = load_settings(Settings, env)
        available = drivers_for(settings.mq_type)
        wanted = drivers.split(",") if drivers else list(available)
        unknown = [d for d in wanted if d not in available]
        if unknown:
            raise click.BadParameter(f"{', '.join(unknown)} not available for "
                                     f"{settings.mq_type}; available: {', '.join(available)}",
                                     param_hint="--drivers")
        results = asyncio.run(_bench(env, chosen, wanted, available, rounds))
    finally:
        if kit is not None:
            kit.stop()
    backend = registry.canonical_name(settings.mq_type)
    if backend == "nats":
        backend += " jetstream" if load_settings_env_flag(env) else " core"
    print_report(console, results, backend)
    if json_path:
        write_json(json_path, results, backend, {**dict(os.environ), **env})
    if png_path:
        write_chart(png_path, results, backend)
    if any(r.error or r.lost for r in results):
        raise SystemExit(1)


def load_settings_env_flag(env: Mapping[str, str]) -> bool:
    value = env.get("NATS_USE_JETSTREAM", os.environ.get("NATS_USE_JETSTREAM", "true"))
    return value.strip().lower() in ("1", "true", "yes", "on")


async def _bench(env: Mapping[str, str], workloads: list[Any], wanted: list[str],
                 available: Mapping[str, Any], rounds: int) -> list[Any]:
    from rich.progress import Progress

    from .bench import run_workload

    results = []
    total = sum(w.message_count for w in workloads) * len(wanted) * rounds
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("benchmarking", total=total)
        for round_ in range(rounds):
            for workload in workloads:
                order = wanted[round_ % len(wanted):] + wanted[:round_ % len(wanted)]
                for name in order:
                    progress.update(task, description=f"{workload.name} / {name} "
                                                      f"(round {round_ + 1})")
                    driver = available[name](env)
                    results.append(await run_workload(
                        driver, workload, on_progress=lambda n: progress.advance(task, n)))
    return results


# -- local brokers --------------------------------------------------------------------------


@cli.group()
def broker() -> None:
    """Run a real broker as a local process (cached, loopback only)."""


@broker.command("up")
@click.argument("name")
def broker_up(name: str) -> None:
    """Start NAME's broker and print the environment lines to use it."""
    state_file = RUN_DIR / f"{registry.canonical_name(name)}.json"
    if state_file.exists():
        kit = _kit_from_state(state_file)
        if kit.alive() and kit.ready():
            err.print(f"{kit.name} is already running")
            _print_env(kit)
            return
    kit = registry.kit_class(name)(RUN_DIR / registry.canonical_name(name))
    started = time.perf_counter()
    kit.start()
    kit.save_state()
    err.print(f"{kit.name} ready in {time.perf_counter() - started:.2f}s (pid {kit.pid}, "
              f"log {kit.log_path})")
    _print_env(kit)


def _print_env(kit: BrokerKit) -> None:
    for key, value in kit.env().items():
        print(f"{key}={value}")


def _kit_from_state(path: Path) -> BrokerKit:
    state = json.loads(path.read_text())
    cls: type[BrokerKit] = registry.kit_class(state["name"])
    return cls.from_state(state)


@broker.command("down")
@click.argument("name")
def broker_down(name: str) -> None:
    """Stop NAME's broker (SIGTERM, then SIGKILL after a grace period)."""
    path = RUN_DIR / f"{registry.canonical_name(name)}.json"
    if not path.exists():
        raise KitError(f"no {name} broker was started with `cozemq broker up {name}`")
    kit = _kit_from_state(path)
    kit.stop()
    path.unlink()
    err.print(f"{kit.name} stopped")


@broker.command("status")
def broker_status() -> None:
    """List the brokers started with `cozemq broker up`."""
    table = Table()
    for column in ("broker", "pid", "state", "address"):
        table.add_column(column)
    for path in sorted(RUN_DIR.glob("*.json")) if RUN_DIR.exists() else []:
        kit = _kit_from_state(path)
        state = "ready" if kit.alive() and kit.ready() else "running" if kit.alive() else "dead"
        table.add_row(kit.name, str(kit.pid), state, kit.env().get("MQ_NAME_SERVER", ""))
    console.print(table)
    known = ", ".join(registry.kit_names())
    err.print(f"kits installed: {known}")


if __name__ == "__main__":  # pragma: no cover
    main()
