"""The bench's output: a terminal table, JSON for machines, a PNG chart, and the ratios."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..errors import ConfigurationError
from .runner import Result


def summarise(results: Sequence[Result]) -> dict[tuple[str, str], dict[str, float]]:
    """Median over rounds, per (workload, driver)."""
    grouped: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for r in results:
        grouped[(r.workload, r.driver)].append(r)
    summary = {}
    for key, runs in grouped.items():
        summary[key] = {
            "publish_rate": statistics.median(r.publish_rate for r in runs),
            "consume_rate": statistics.median(r.consume_rate for r in runs),
            "p50": statistics.median(r.latency_ms["p50"] for r in runs),
            "p99": statistics.median(r.latency_ms["p99"] for r in runs),
            "p99.9": statistics.median(r.latency_ms["p99.9"] for r in runs),
            "max": max(r.latency_ms["max"] for r in runs),
            "lost": sum(r.lost for r in runs),
            "duplicates": sum(r.duplicates for r in runs),
            "reordered": sum(r.reordered for r in runs),
            "cpu_us": statistics.median(r.cpu_us_per_message for r in runs),
            "mb_s": statistics.median(r.publish_mb_s for r in runs),
            "rounds": len(runs),
        }
    return summary


def ratios(summary: dict[tuple[str, str], dict[str, float]]) -> list[dict[str, Any]]:
    """cozemq against each other driver, per workload: throughput and p99 latency."""
    rows = []
    for (workload, driver), ours in summary.items():
        if driver != "cozemq":
            continue
        for (other_workload, other), theirs in summary.items():
            if other_workload != workload or other == "cozemq":
                continue
            rows.append({
                "workload": workload,
                "versus": other,
                "throughput": _ratio(ours["consume_rate"], theirs["consume_rate"]),
                "publish": _ratio(ours["publish_rate"], theirs["publish_rate"]),
                "p99": _ratio(ours["p99"], theirs["p99"]),
                "cpu": _ratio(ours["cpu_us"], theirs["cpu_us"]),
            })
    return rows


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def print_report(console: Console, results: Sequence[Result], backend: str) -> None:
    summary = summarise(results)
    table = Table(title=f"cozemq bench on {backend} (median of rounds)")
    for column in ("workload", "driver", "publish msg/s", "MB/s", "consume msg/s", "p50 ms",
                   "p99 ms", "p99.9 ms", "max ms", "lost", "dup", "reord", "CPU µs/msg"):
        table.add_column(column, justify="right")
    for (workload, driver), s in sorted(summary.items()):
        table.add_row(workload, driver, f"{s['publish_rate']:,.0f}", f"{s['mb_s']:.2f}",
                      f"{s['consume_rate']:,.0f}", f"{s['p50']:.2f}", f"{s['p99']:.2f}",
                      f"{s['p99.9']:.2f}", f"{s['max']:.2f}", str(int(s["lost"])),
                      str(int(s["duplicates"])), str(int(s["reordered"])), f"{s['cpu_us']:.1f}")
    console.print(table)
    rows = ratios(summary)
    if rows:
        ratio_table = Table(title="cozemq / other (throughput: higher is better; p99 and CPU: "
                                  "lower is better)")
        for column in ("workload", "versus", "consume throughput", "publish", "p99", "CPU"):
            ratio_table.add_column(column, justify="right")
        for row in rows:
            ratio_table.add_row(row["workload"], row["versus"], f"{row['throughput']:.2f}",
                                f"{row['publish']:.2f}", f"{row['p99']:.2f}", f"{row['cpu']:.2f}")
        console.print(ratio_table)
    for r in results:
        if r.error:
            console.print(f"[red]{r.workload}/{r.driver}: {r.error}[/red]")


def write_json(path: Path, results: Sequence[Result], backend: str, env: dict[str, str]) -> None:
    summary = summarise(results)
    document = {
        "backend": backend,
        "environment": {k: v for k, v in env.items() if k in ("COZE_MQ_TYPE",
                                                                "NATS_USE_JETSTREAM")},
        "runs": [r.as_dict() for r in results],
        "summary": [{"workload": w, "driver": d, **s} for (w, d), s in sorted(summary.items())],
        "ratios": ratios(summary),
    }
    path.write_text(json.dumps(document, indent=2))


def write_chart(path: Path, results: Sequence[Result], backend: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise ConfigurationError(
            "--png needs matplotlib: pip install \"cozemq[bench]\""
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(results)
    workloads = sorted({w for w, _ in summary})
    drivers = sorted({d for _, d in summary}, key=lambda d: (d != "cozemq", d))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), constrained_layout=True)
    width = 0.8 / max(1, len(drivers))
    for i, driver in enumerate(drivers):
        xs = [j + i * width for j in range(len(workloads))]
        top.bar(xs, [summary.get((w, driver), {}).get("consume_rate", 0) for w in workloads],
                width, label=driver)
        bottom.bar(xs, [summary.get((w, driver), {}).get("p99", 0) for w in workloads],
                   width, label=driver)
    for axis, label in ((top, "consume msg/s"), (bottom, "p99 latency ms")):
        axis.set_xticks([j + width * (len(drivers) - 1) / 2 for j in range(len(workloads))])
        axis.set_xticklabels(workloads, fontsize=8)
        axis.set_ylabel(label)
        axis.legend(fontsize=8)
    top.set_title(f"cozemq bench on {backend}")
    fig.savefig(path, dpi=110)
    plt.close(fig)
