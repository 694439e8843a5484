"""The ground-truth stage on each executor (issue 15): wall-clock, overhead per work item, and how it
scales with workers. Writes ``benchmarks/results/executors.md``.

    .venv/bin/python benchmarks/bench_executors.py            # cartpole-10, smoke preset, 1-3 minutes

One run of cartpole-10 (smoke preset) is made to the ``subsets`` stage; its ground truth (every distinct
subset fine-tuned from θ* for ``--rollouts`` PPO rollouts, then scored by rollouts as the estimate is) is then
run from scratch with each executor and worker count.
Every run must give byte-identical scores; the table says how long each took.

Overhead per item: wall-clock minus the items' own compute time (``seconds`` in each record, measured
inside the worker) spread over ``workers``, divided by the items per worker. It holds pool start-up,
shipping θ* and results, scheduling, and time lost to other processes on the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policygradex import execute, pipeline, studies, tasks
from policygradex.io import write_text


@dataclass
class Measured:
    executor: str
    workers: int
    wall: float
    compute: float
    items: int
    scores: bytes

    @property
    def overhead_per_item(self) -> float:
        return (self.wall - self.compute / self.workers) / (self.items / self.workers)


def load_line() -> str:
    la = os.getloadavg()
    return f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}"


def busy_processes() -> str:
    """The other processes using the CPU now (top 5 by CPU), for the record."""
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    rows = [line.split(None, 1) for line in out.splitlines()[1:6]]
    return ", ".join(f"{name.strip()} {cpu}%" for cpu, name in rows)


def ground_truth_once(base: Path, work: Path, family, cfg, executor: str, workers: int, steps: int) -> Measured:  # type: ignore[no-untyped-def]
    d = work / f"{executor}-{workers}"
    shutil.copytree(base, d)
    run = pipeline.open_run(family, cfg, d)
    start = time.perf_counter()
    studies.ground_truth(run, total_steps=steps, executor=executor, workers=workers)
    wall = time.perf_counter() - start
    records = [json.loads(p.read_text()) for p in sorted((d / "ground_truth" / "subsets").glob("*.json"))]
    return Measured(executor, workers, wall, sum(r["seconds"] for r in records), len(records),
                    (d / "ground_truth" / "scores.jsonl").read_bytes())


def ray_roundtrip(workers: int, n: int = 200) -> tuple[float, float]:
    """Seconds to start a local Ray, and per item for ``n`` items that do nothing (Ray's own cost)."""
    start = time.perf_counter()
    execute.start_ray(None, workers)
    started = time.perf_counter() - start
    list(execute.RayExecutor(workers).map(_nothing, [0] * 10, None))  # workers up
    start = time.perf_counter()
    list(execute.RayExecutor(workers).map(_nothing, list(range(n)), b"\0" * 200_000))
    return started, (time.perf_counter() - start) / n


def _nothing(item: int, shared: object) -> int:
    return item


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="cartpole-10")
    ap.add_argument("--subsets", type=int, default=None, help="estimate.num_subsets (default: the smoke preset's)")
    ap.add_argument("--episodes", type=int, default=None, help="scoring episodes per task (default: the smoke preset's)")
    ap.add_argument("--rollouts", type=int, default=1, help="PPO rollouts of fine-tuning per subset")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "executors.md")
    args = ap.parse_args()
    family = tasks.make(args.family)
    cfg = pipeline.RunConfig(preset="smoke", seed=0, estimate=pipeline.EstimateConfig(
        num_subsets=args.subsets, episodes=args.episodes))
    work = Path(tempfile.mkdtemp(prefix="bench-executors-"))
    load_before = load_line()
    try:
        t = time.perf_counter()
        pipeline.run(family, cfg, work / "base", stop_after="subsets")
        prep = time.perf_counter() - t
        run = pipeline.open_run(family, cfg, work / "base")
        size = max(len(s) for s in run.store.load_subsets())
        steps = args.rollouts * run.config.meta.ppo.batch_size(size)
        plan = [("serial", 1), ("process", 1), ("process", 2), ("ray", 1), ("ray", 2)]
        results, ray_costs = [], {}
        for executor, workers in plan:
            if executor == "ray":
                execute.shutdown_ray()
                ray_costs[workers] = ray_roundtrip(workers)
            results.append(ground_truth_once(work / "base", work, family, cfg, executor, workers, steps))
            print(f"{executor} x{workers}: {results[-1].wall:.1f} s", flush=True)
        execute.shutdown_ray()
        busy = busy_processes()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = load_line()
    same = all(r.scores == results[0].scores for r in results)
    serial = results[0]
    lines = [
        "# Executors: the ground-truth stage on serial, process and ray",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_executors.py --family {args.family}"
        + (f" --subsets {args.subsets}" if args.subsets else "") + (f" --episodes {args.episodes}" if args.episodes else "")
        + f" --rollouts {args.rollouts}`.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch threads 1 "
        f"per worker, ray {_ray_version()}; the benchmark ran at niceness {os.nice(0)}.",
        "",
        "**Load, stated honestly:** the two cores are shared with a long mutation-testing job and another engineer's "
        f"work. Load average (1/5/15 min) {load_before} before and {load_after} after; busiest processes at the end: "
        f"{busy}. Whether a second worker found a free core shows in the mean item compute at 2 workers against 1 "
        "(below); repeat runs of this benchmark differ by tens of percent, and the 1-vs-2-worker ordering of process "
        "and ray flipped between runs.",
        "",
        f"Stage: {args.family}, smoke preset, seed 0, {run.config.estimate.num_subsets} subsets (min coverage "
        f"{run.config.estimate.min_coverage}) → {serial.items} distinct subsets, each fine-tuned from θ* for {steps} "
        f"env steps ({args.rollouts} PPO rollout{'s' if args.rollouts > 1 else ''}) and scored with {run.config.estimate.episodes} episodes per task. Preparing the run (meta-training, features, subsets) took {prep:.0f} s and is not counted.",
        "",
        f"Identical `ground_truth/scores.jsonl` on every executor: **{'yes' if same else 'NO'}**.",
        "",
        "| executor | workers | wall-clock (s) | Σ item compute (s) | items | overhead per item (s) | speed-up vs serial |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.executor} | {r.workers} | {r.wall:.1f} | {r.compute:.1f} | {r.items} | "
                     f"{r.overhead_per_item:.2f} | {serial.wall / r.wall:.2f}× |")
    lines += [
        "",
        "Wall-clock includes starting the pool (process: spawning workers that import torch) but not starting Ray, "
        "which is measured apart:",
        "",
        "| local Ray CPUs | start-up (s) | round trip per empty item, 200 items, 200 kB shared input (ms) |",
        "|---:|---:|---:|",
    ]
    for w, (start, per) in ray_costs.items():
        lines.append(f"| {w} | {start:.1f} | {per * 1000:.1f} |")
    by = {(r.executor, r.workers): r for r in results}
    lines += ["", "## How it scales with workers (a model, from the 1- and 2-worker runs above)", ""]
    for executor in ("process", "ray"):
        one, two = by.get((executor, 1), serial), by[(executor, 2)]
        item = one.compute / one.items
        fixed = one.wall - one.compute  # per-stage cost beyond the items' compute, at 1 worker
        lines.append(
            f"- **{executor}**: 1 → 2 workers{' (1 worker: the serial run)' if one is serial else ''}: {one.wall:.1f} s → {two.wall:.1f} s (×{one.wall / two.wall:.2f}); "
            f"mean item compute {item:.2f} s at 1 worker, {two.compute / two.items:.2f} s at 2 "
            f"(×{two.compute / two.items / item:.2f}: 1.0 if the second worker had a core of its own, 2.0 if the two "
            f"shared one). Overhead beyond the items' compute at 1 worker: {fixed:.1f} s per stage."
        )
    ray1 = by[("ray", 1)]
    per_item = ray1.compute / ray1.items
    over = max(ray1.overhead_per_item, 0.0)
    lines += [
        "",
        "Model (stated as such, not measured beyond 2 workers): the stage's items are independent, so with W workers "
        "on W free cores wall ≈ start-up + ⌈items / W⌉ × (item compute + overhead per item). With this run's "
        f"numbers on Ray (item {per_item:.2f} s, overhead {over:.2f} s, {ray1.items} items): "
        + ", ".join(
            f"W = {w}: ≈ {ray_costs[1][0] + np.ceil(ray1.items / w) * (per_item + over):.0f} s" for w in (1, 2, 4, 8, 16)
        )
        + ". For scale: the default cartpole-10 ground truth of studies_cartpole-10.md (97 distinct subsets, about "
        "100,000 env steps each) took 1,699 s of item compute, 17.5 s per item; by the same model it needs about "
        "⌈97 / W⌉ × 17.5 s: about 28 min on one core, 2 min on 16 CPUs, 18 s on 97 or more. Past W = items, more "
        "workers add nothing.",
    ]
    write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def _ray_version() -> str:
    try:
        import ray

        return ray.__version__
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    main()
