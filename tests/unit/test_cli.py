"""The `cozemq` command, run as a user would, against a real nats-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cozemq.kit import BrokerKit

COZEMQ = [sys.executable, "-m", "cozemq"]
SECRET = "doctor-must-mask-this"


def run(args: list[str], env: dict[str, str], timeout: float = 60,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COZE", "NATS_", "MQ_"))}
    return subprocess.run([*COZEMQ, *args], env={**clean, **env}, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def test_pub_then_sub_round_trip(nats_kit: BrokerKit) -> None:
    env = nats_kit.env()
    sent = run(["pub", "cli_topic", "hello from the cli", "--key", "k1", "-H", "trace=1"], env)
    assert sent.returncode == 0, sent.stderr
    got = run(["sub", "cli_topic", "--group", "cli", "--count", "1", "--timeout", "20",
               "--json"], env)
    assert got.returncode == 0, got.stderr
    message = json.loads(got.stdout.splitlines()[0])
    assert message["body"] == "hello from the cli"
    assert (message["key"], message["headers"]) == ("k1", {"trace": "1"})


def test_doctor_masks_secrets_and_checks_the_broker(nats_kit: BrokerKit) -> None:
    result = run(["doctor"], {**nats_kit.env(), "NATS_PASSWORD": SECRET, "NATS_USERNAME": ""})
    assert result.returncode == 0, result.stderr
    assert "NATS_PASSWORD" in result.stdout and "******" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    assert "ok" in result.stdout


def test_doctor_reports_an_unreachable_broker_clearly() -> None:
    result = run(["doctor"], {"COZE_MQ_TYPE": "nats", "MQ_NAME_SERVER": "nats://127.0.0.1:1",
                              "COZEMQ_CONNECT_TIMEOUT": "1"}, timeout=30)
    assert result.returncode == 2
    assert "did not accept a connection within 1s" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_type_is_a_one_line_error() -> None:
    result = run(["pub", "t", "x"], {"COZE_MQ_TYPE": "rabbit"})
    assert result.returncode == 2
    assert "valid values" in result.stderr and "Traceback" not in result.stderr


def test_broker_up_status_down(tmp_path: Path) -> None:
    env = {"COZEMQ_CACHE_DIR": str(tmp_path)}
    up = run(["broker", "up", "nats"], env)
    try:
        assert up.returncode == 0, up.stderr
        lines = dict(line.split("=", 1) for line in up.stdout.splitlines())
        assert lines["COZE_MQ_TYPE"] == "nats"
        assert lines["MQ_NAME_SERVER"].startswith("nats://127.0.0.1:")
        status = run(["broker", "status"], env)
        assert "ready" in status.stdout
        sent = run(["pub", "kit_topic", "via broker up"], lines)
        assert sent.returncode == 0, sent.stderr
    finally:
        down = run(["broker", "down", "nats"], env)
    assert down.returncode == 0, down.stderr
    assert "dead" in run(["broker", "status"], env).stdout or not list(
        (tmp_path / "run").glob("*.json"))


def test_demo_prints_a_working_round_trip() -> None:
    result = run(["demo", "--messages", "300"], {}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "starting a local nats-server" in result.stderr
    for group in ("indexer", "search"):
        row = next(line for line in result.stdout.splitlines() if group in line)
        assert "300" in row


def test_topic_create_makes_the_stream_ahead_of_use(nats_kit: BrokerKit) -> None:
    result = run(["topic", "create", "precreated_a", "precreated_b"], nats_kit.env())
    assert result.returncode == 0, result.stderr
    assert "created precreated_a" in result.stderr and "created precreated_b" in result.stderr


def test_topic_create_on_core_nats_is_not_supported(nats_kit: BrokerKit) -> None:
    result = run(["topic", "create", "x"], {**nats_kit.env(), "NATS_USE_JETSTREAM": "false"})
    assert result.returncode == 2
    assert "cannot create topics" in result.stderr
