"""Benchmark: the paper's meta-RL protocol on a ``*-meta-10`` family (issue 13), in one command.

Runs the PolicyGradEx pipeline on the family up to the clustering (θ*, features, estimate, groups), then
``policygradex meta-rl`` on it (MAML per group for every grouping, adaptation on the 50 held-out tasks,
the (a)/(b)/(c) assignment comparison, Hessian traces), and writes
``benchmarks/results/meta_rl_<family>.md``: the protocol's tables with the budgets, seeds, wall-clock,
the machine and its load.

    .venv/bin/python benchmarks/bench_meta_rl.py --family cartpole-meta-10 --seeds 3 [--work DIR]
        [--meta-steps N] [--maml-steps N] [--adapt-steps 1 200] [--executor process --workers 2] [--tiny]
        [--samples-per-task N] [--maml-rollout-steps N] [--maml-envs-per-task N] [--eval-episodes N]

``--work DIR`` keeps the run directory: a killed benchmark resumes where it stopped. ``--tiny`` shrinks
every budget to seconds (to check that the command works; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import torch

from policygradex import meta_rl, pipeline, tasks
from policygradex.config import EstimateConfig, FeatureConfig, MetaConfig
from policygradex.errors import PolicyGradExError
from policygradex.io import write_text
from policygradex.report import format_seconds
from policygradex.rl.maml import MAMLConfig
from policygradex.threads import torch_threads


def configs(args: argparse.Namespace) -> tuple[tasks.TaskFamily, pipeline.RunConfig, meta_rl.MetaRLConfig]:
    """The family, the run's configuration and the protocol's, from the command line.

    Raises:
        PolicyGradExError: an unknown family or a bad setting.
    """
    family = tasks.make(args.family)
    run_cfg = pipeline.RunConfig(k=args.k, seed=args.seed, executor=args.executor, workers=args.workers,
                                 estimate=EstimateConfig(score=args.score),
                                 meta=MetaConfig(total_steps=args.meta_steps),
                                 features=FeatureConfig(samples_per_task=args.samples_per_task))
    maml = {k: v for k, v in (("rollout_steps", args.maml_rollout_steps), ("envs_per_task", args.maml_envs_per_task))
            if v is not None}
    protocol = meta_rl.MetaRLConfig(seeds=args.seeds, total_steps=args.maml_steps, adapt_steps=tuple(args.adapt_steps),
                                    eval_episodes=args.eval_episodes, maml=MAMLConfig(**maml))
    return family, run_cfg, protocol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="cartpole-meta-10")
    ap.add_argument("--seed", type=int, default=0, help="the run's seed (θ* and the estimated grouping)")
    ap.add_argument("--seeds", type=int, default=3, help="protocol seeds (MAML, random groupings, adaptation)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="run directory to keep (and resume)")
    ap.add_argument("--meta-steps", type=int, default=None, help="θ*'s PPO budget (default: the family's)")
    ap.add_argument("--score", default="rollout", choices=["rollout", "surrogate", "objective"])
    ap.add_argument("--maml-steps", type=int, default=None, help="MAML env steps per partition (default: θ*'s budget)")
    ap.add_argument("--adapt-steps", type=int, nargs="+", default=[1, 200])
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--samples-per-task", type=int, default=None, help="feature transitions per task (default: the family's)")
    ap.add_argument("--maml-rollout-steps", type=int, default=None,
                    help="steps per environment of one MAML/adaptation rollout (default 128; lower for slow simulators)")
    ap.add_argument("--maml-envs-per-task", type=int, default=None, help="environments per task of one rollout (default 4)")
    ap.add_argument("--executor", default="serial", choices=["serial", "process"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="seconds-long budgets, to check the command")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--note", default="", help="conditions: what else ran on the machine meanwhile")
    args = ap.parse_args()

    try:
        family, run_cfg, protocol = configs(args)
    except PolicyGradExError as e:  # a bad value: one line, before any work
        raise SystemExit(f"error: {e}") from None
    if args.tiny:
        run_cfg = replace(run_cfg, preset="smoke", meta=MetaConfig(total_steps=10240, depth=2, width=16, tag_every=0),
                          features=FeatureConfig(samples_per_task=64, d=16),
                          estimate=EstimateConfig(score="objective", num_subsets=20))
        protocol = replace(protocol, total_steps=160, adapt_steps=(0, 2), eval_episodes=1, assign_samples=16,
                           hessian_probes=2, maml=MAMLConfig(envs_per_task=1, rollout_steps=8, outer_epochs=1))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-meta-rl-"))
    load_before = os.getloadavg()
    with torch_threads(1):
        t = time.perf_counter()
        pipeline.run(family, run_cfg, work, stop_after="cluster")
        t_pipeline = time.perf_counter() - t
        t = time.perf_counter()
        run = pipeline.reopen(work)
        meta_rl.meta_rl(run, protocol)
        t_protocol = time.perf_counter() - t
    load_after = os.getloadavg()
    table = run.store.meta_rl_md.read_text()
    rc = run.config
    lines = [
        table.rstrip("\n"),
        "",
        "## How this was made",
        "",
        f"- Command: `.venv/bin/python benchmarks/bench_meta_rl.py --family {args.family} --seeds {args.seeds}"
        + (f" --meta-steps {args.meta_steps}" if args.meta_steps else "")
        + (f" --maml-steps {args.maml_steps}" if args.maml_steps else "")
        + f" --adapt-steps {' '.join(map(str, args.adapt_steps))}"
        + (f" --eval-episodes {args.eval_episodes}" if args.eval_episodes != 10 else "")
        + (f" --samples-per-task {args.samples_per_task}" if args.samples_per_task else "")
        + (f" --maml-rollout-steps {args.maml_rollout_steps}" if args.maml_rollout_steps else "")
        + (f" --maml-envs-per-task {args.maml_envs_per_task}" if args.maml_envs_per_task else "")
        + (f" --executor {args.executor} --workers {args.workers}" if args.executor != "serial" else "")
        + (f" --score {args.score}" if args.score != "rollout" else "")
        + (" --tiny" if args.tiny else "") + "`" + (" (TINY BUDGETS: the numbers mean nothing)" if args.tiny else ""),
        f"- Run: seed {rc.seed}, k = {rc.k}, θ* {rc.meta.ppo.total_steps:,} PPO env steps "
        f"({rc.meta.policy.depth}×{rc.meta.policy.width} MLP), features {rc.features.samples_per_task}/task at d = "
        f"{rc.features.d}, {rc.estimate.num_subsets} subsets scored by `{rc.estimate.score}`; groups {run.store.load_groups(family.n)}.",
        f"- Wall-clock: pipeline up to the clustering {format_seconds(t_pipeline)} (0 s if it was already there), "
        f"meta-RL protocol {format_seconds(t_protocol)} (executor {args.executor}"
        + (f", {args.workers} workers" if args.executor != "serial" else "") + ", 1 torch thread per process).",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, gymnasium {gym.__version__}; load average "
        f"{load_before[0]:.2f} before and {load_after[0]:.2f} after (other work on the machine shares the cores).",
    ] + ([f"- Conditions: {args.note}"] if args.note else [])
    out = args.out or Path(__file__).parent / "results" / f"meta_rl_{args.family}{'-tiny' if args.tiny else ''}.md"
    write_text(out, "\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
