"""A short smoke run of `cozemq bench`: it runs end to end and counts. The real numbers come from
full runs (docs/performance.md), never from timed unit tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cozemq.bench import load_workload, workload_names
from cozemq.kit import BrokerKit


def bench(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COZE", "NATS_", "MQ_"))}
    return subprocess.run([sys.executable, "-m", "cozemq", "bench", *args],
                          env={**clean, **env, "COLUMNS": "200"}, capture_output=True,
                          text=True, timeout=180)


def test_every_builtin_workload_loads_and_is_bounded() -> None:
    names = workload_names()
    assert {"max-rate-100b", "max-rate-1kb", "fixed-rate-latency", "fan-out", "batch-send",
            "many-clients", "smoke"} <= set(names)
    for name in names:
        workload = load_workload(name)
        assert 0 < workload.message_count <= 100_000


def test_smoke_run_compares_cozemq_raw_and_faststream_on_nats(
    nats_kit: BrokerKit, tmp_path: Path
) -> None:
    out, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    result = bench(["--smoke", "--json", str(out), "--png", str(chart)], nats_kit.env())
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(out.read_text())
    drivers = {row["driver"]: row for row in document["summary"]}
    assert set(drivers) == {"cozemq", "raw", "faststream"}
    for row in drivers.values():
        assert (row["lost"], row["duplicates"]) == (0, 0)
        assert row["consume_rate"] > 0 and row["p99"] >= row["p50"] > 0
    assert {r["versus"] for r in document["ratios"]} == {"raw", "faststream"}
    assert chart.stat().st_size > 10_000
    assert "cozemq / other" in result.stdout


def test_smoke_run_on_the_memory_backend_has_only_cozemq() -> None:
    result = bench(["--smoke", "--drivers", "raw"], {"COZE_MQ_TYPE": "memory"})
    assert result.returncode != 0
    assert "available: cozemq" in result.stderr
