#!/usr/bin/env python3
"""Fan-out benchmark: Parley against the original design and a plain asyncio server, in one run.

Each target runs as its own server process (bench/targets.py). For every load step the
targets take turns (interleaved, the order rotating), driven by ../shared/bench/wsload.py, so
that a noisy neighbour hurts them alike. Prints one table with ratios, writes every run's JSON
to ``--out`` and, with matplotlib installed, a plot of deliveries/s against p99.

    .venv/bin/python bench/fanout.py                 # the full run (~15 min)
    .venv/bin/python bench/fanout.py --quick         # a smaller sweep (~4 min)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.targets import SHARED, Target, make_targets, workdir  # noqa: E402

P99_LIMIT_MS = 50.0
RTT_ROUNDS = 5  # the round trip is the median of this many runs' p50: single runs vary


def wsload(target: Target, *args: str, label: str = "", max_time: float = 240) -> dict[str, Any]:
    """One wsload run against ``target``; its JSON summary."""
    command = [
        sys.executable, str(SHARED / "wsload.py"), "--url", target.url(), "--quiet",
        "--json-template", target.template, "--max-time", str(max_time), "--label", label, *args,
    ]  # fmt: skip
    if target.origin():
        command += ["--origin", target.origin()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=max_time + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"wsload failed against {target.name}:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1])


def sweep(
    targets: list[Target], clients: int, rates: list[float], duration: float, log: list
) -> dict:
    """Deliveries/s and p99 per target and rate; stops raising a target's rate once it fails."""
    results: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    failed: set[str] = set()
    for step, rate in enumerate(rates):
        order = targets[step % len(targets) :] + targets[: step % len(targets)]
        for target in order:
            if target.name in failed:
                continue
            run = wsload(
                target,
                "--clients", str(clients), "--senders", "1", "--rate", str(rate),
                "--duration", str(duration), "--clients-procs", "2" if clients > 200 else "1",
                label=f"{target.name} {clients}c {rate}/s",
            )  # fmt: skip
            log.append(run)
            point = {
                "rate": rate,
                "dps": run["deliveries_per_s"],
                "p99": run["lat_ms"]["p99"],
                "p50": run["lat_ms"]["p50"],
                "loss": run["loss_pct"],
                "cpu": run["watched"].get("server", {}).get("cpu_pct"),
            }
            results[target.name].append(point)
            ok = point["loss"] == 0 and point["p99"] is not None and point["p99"] <= P99_LIMIT_MS
            print(
                f"  {clients:>4} clients {rate:>6.0f} msg/s  {target.name:<13} "
                f"{point['dps']:>9,.0f} deliveries/s  p50 {point['p50'] or 0:>8.1f} ms  "
                f"p99 {point['p99'] or 0:>8.1f} ms  loss {point['loss']:>5.1f} %  "
                f"server cpu {point['cpu'] or 0:>5.1f} %  {'ok' if ok else 'over'}",
                flush=True,
            )
            if not ok and point["p99"] is not None and point["p99"] > 4 * P99_LIMIT_MS:
                failed.add(target.name)  # far past the limit: higher rates only waste time
    return results


def best(points: list[dict[str, Any]]) -> float:
    """The highest deliveries/s with p99 within the limit and nothing lost."""
    good = [
        p["dps"]
        for p in points
        if p["loss"] == 0 and p["p99"] is not None and p["p99"] <= P99_LIMIT_MS
    ]
    return max(good, default=0.0)


def round_trip(target: Target, log: list) -> float:
    run = wsload(target, "--clients", "1", "--senders", "1", "--sequential", "--count", "1000")
    log.append(run)
    return run["rtt_ms"]["p50"]


def idle_memory(target: Target, clients: int, log: list, logdir: Path) -> float:
    # A fresh process: one that served the sweeps reuses the memory it freed, and its RSS
    # would hardly grow per connection.
    target.stop()
    target.start(logdir)
    run = wsload(
        target, "--clients", str(clients), "--senders", "0", "--hold", "3",
        "--clients-procs", str(max(1, clients // 2500)), "--connect-concurrency", "200",
    )  # fmt: skip
    log.append(run)
    return run["watched"]["server"]["rss_kb_per_conn"]


def close_at_once(target: Target, clients: int, log: list) -> int | None:
    """Connect ``clients``, close them all at once, then count group members left behind."""
    run = wsload(
        target,
        "--clients",
        str(clients),
        "--senders",
        "0",
        "--hold",
        "1",
        "--connect-concurrency",
        "200",
    )
    log.append(run)
    time.sleep(3)
    return target.leftover_members()


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}×" if reference else "–"


def plot(results: dict[str, dict[str, list]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (clients, per_target) in zip(axes[0], results.items(), strict=True):
        for name, points in per_target.items():
            ax.plot([p["dps"] for p in points], [p["p99"] for p in points], marker="o", label=name)
        ax.axhline(P99_LIMIT_MS, color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("deliveries/s")
        ax.set_ylabel("p99 latency, ms")
        ax.set_title(f"{clients} clients in one room")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="parley,parley-redis,original,plain")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter steps")
    parser.add_argument("--duration", type=float, default=None, help="seconds per step")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--skip", default="", help="comma list of: sweep,rtt,memory,close")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    duration = args.duration or (4 if args.quick else 8)
    rates_100 = [50, 100, 200, 300, 400] if args.quick else [50, 100, 150, 200, 250, 300, 400, 500]
    rates_500 = [10, 20, 40, 60] if args.quick else [10, 20, 30, 40, 50, 60, 80]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H%M")
    log: list[dict[str, Any]] = []

    targets = make_targets(args.targets.split(","), workdir())
    logdir = Path(workdir())
    print(f"targets: {', '.join(t.name for t in targets)}; server logs in {logdir}", flush=True)
    for target in targets:
        target.start(logdir)
    summary: dict[str, dict[str, Any]] = {t.name: {} for t in targets}
    sweeps: dict[str, dict[str, list]] = {}
    try:
        if "sweep" not in skip:
            for clients, rates in ((100, rates_100), (500, rates_500)):
                print(f"== {clients} clients, 1 sender, {duration:g} s per step", flush=True)
                sweeps[str(clients)] = sweep(targets, clients, rates, duration, log)
                for name, points in sweeps[str(clients)].items():
                    summary[name][f"best_{clients}"] = best(points)
        if "rtt" not in skip:
            print(f"== round trip, 1 client, 1,000 sequential messages, {RTT_ROUNDS} rounds")
            rounds: dict[str, list[float]] = {t.name: [] for t in targets}
            for n in range(RTT_ROUNDS):  # interleaved, the order rotating
                for target in targets[n % len(targets) :] + targets[: n % len(targets)]:
                    rounds[target.name].append(round_trip(target, log))
            for name, values in rounds.items():
                summary[name]["rtt_p50"] = statistics.median(values)
                summary[name]["rtt_p50_rounds"] = values
                print(f"  {name:<13} p50 per round (ms): {', '.join(f'{v:.2f}' for v in values)}")
        if "memory" not in skip:
            for clients in (1000, 10000):
                print(f"== idle memory, {clients:,} connections", flush=True)
                for target in targets:
                    summary[target.name][f"kib_{clients}"] = idle_memory(
                        target, clients, log, logdir
                    )
        if "close" not in skip:
            print("== 1,000 sockets closing at once", flush=True)
            for target in targets:
                summary[target.name]["leftover"] = close_at_once(target, 1000, log)
    finally:
        for target in targets:
            target.stop()
        (args.out / f"fanout-{stamp}.json").write_text(
            json.dumps({"summary": summary, "sweeps": sweeps, "runs": log}, indent=1)
        )

    ref = summary.get("plain", {})
    orig = summary.get("original", {})
    rows = [
        ("100 clients: best deliveries/s, p99 ≤ 50 ms, no loss", "best_100", "{:,.0f}"),
        ("500 clients: best deliveries/s, p99 ≤ 50 ms, no loss", "best_500", "{:,.0f}"),
        ("round trip p50, 1 client (ms; median of 5 runs)", "rtt_p50", "{:.2f}"),
        ("server memory per idle connection, 1,000 (KiB)", "kib_1000", "{:.1f}"),
        ("server memory per idle connection, 10,000 (KiB)", "kib_10000", "{:.1f}"),
        ("group members left after 1,000 close at once", "leftover", "{}"),
    ]
    base = summary.get("parley-baseline", {})
    names = [t.name for t in targets]
    print(
        f"\n{'measure':<52}"
        + "".join(f"{n:>14}" for n in names)
        + "   parley/plain  parley/original"
        + ("  parley/baseline" if base else "")
    )
    for title, key, fmt in rows:
        cells = []
        for name in names:
            value = summary[name].get(key)
            cells.append(f"{fmt.format(value) if value is not None else '–':>14}")
        p = summary.get("parley", {}).get(key)
        extra = ""
        if isinstance(p, int | float) and key not in ("leftover",):
            extra = f"   {ratio(p, ref.get(key) or 0):>12}  {ratio(p, orig.get(key) or 0):>15}"
            if base:
                extra += f"  {ratio(p, base.get(key) or 0):>15}"
        print(f"{title:<52}" + "".join(cells) + extra)
    if sweeps and plot(sweeps, args.out / f"fanout-{stamp}.png"):
        print(f"plot: {args.out / f'fanout-{stamp}.png'}")
    print(f"runs: {args.out / f'fanout-{stamp}.json'}")


if __name__ == "__main__":
    main()
