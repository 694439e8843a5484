"""Benchmark: ``policygradex run`` end to end with the default settings, stage by stage.
Writes ``benchmarks/results/pipeline_<family>.md``.

    .venv/bin/python benchmarks/bench_pipeline.py [--family cartpole-10] [--seed 0] [--executor serial]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from policygradex import pipeline, tasks
from policygradex.io import read_json, write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="cartpole-10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--executor", default="serial", choices=["serial", "process"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    family = tasks.make(args.family)
    work = Path(tempfile.mkdtemp(prefix="pgx-bench-"))
    cfg = pipeline.RunConfig(k=args.k, seed=args.seed, preset=args.preset, executor=args.executor)
    run = pipeline.open_run(family, cfg, work / "run")
    t0 = time.perf_counter()
    for stage in pipeline.STAGES:
        run.run_stage(stage)
    total = time.perf_counter() - t0
    res = read_json(run.dir / "results.json")
    c = run.config
    e = c["estimate"]
    lines = [
        f"# `policygradex run --family {args.family}` end to end",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_pipeline.py --family {args.family} --seed {args.seed} "
        f"--k {args.k} --preset {args.preset} --executor {args.executor}`. Machine: {platform.processor() or platform.machine()}, "
        f"2 cores, 1 torch thread, Python {platform.python_version()}, torch {torch.__version__}, gymnasium {gym.__version__}.",
        "",
        f"Settings (the defaults): meta-training {c['meta']['ppo']['total_steps']:,} env steps; "
        f"{c['features']['samples_per_task']} samples per task, d = {c['features']['d']}; m = {e['num_subsets']} subsets "
        f"of {e['subset_size']} tasks (≥ {e['min_coverage']} per pair); λ = {e['l2']}; ‖Δθ‖ = {e['relative_norm']}·‖θ*‖; "
        f"scores by {e['score']} ({e['episodes']} episodes per task); `{e['affinity']}` affinity; {c['method']} clustering, k = {c['k']}; "
        f"group policies fine-tuned from θ* (meta budget × group size / n each); {c['groups']['eval_episodes']} evaluation episodes.",
        "",
        "| stage | wall-clock (s) |",
        "|---|---:|",
    ]
    for stage in pipeline.STAGES:
        lines.append(f"| {stage} | {run.timings.get(stage, 0.0):.1f} |")
    lines += [
        f"| **total** | **{total:.0f}** ({total / 60:.1f} min) |",
        "",
        f"Groups: `{res['groups']}`",
        "",
        "| task | name | group | θ* alone | group policy |",
        "|---:|---|---:|---:|---:|",
    ]
    for t in res["tasks"]:
        lines.append(f"| {t['index']} | {t['name']} | {t['group']} | {t['meta']:.1f} | {t['group_policy']:.1f} |")
    lines += [f"| **mean** | | | **{res['mean_meta']:.1f}** | **{res['mean_group_policy']:.1f}** |", ""]
    U = np.load(run.dir / "affinity.npy")
    lines += ["Affinity U (task order 0..n−1):", "", "```", np.array2string(U, precision=2, max_line_width=200), "```", ""]
    out = args.out or Path(f"benchmarks/results/pipeline_{args.family}.md")
    write_text(out, "\n".join(lines))
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
