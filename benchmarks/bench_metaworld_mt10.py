"""The Meta-World MT10 row of the paper's main table (issue 14, item 3), at a budget 2 cores allow.

    .venv/bin/python benchmarks/bench_metaworld_mt10.py --work runs/mt10 --meta-steps 500000 --seeds 3 \
        [--family metaworld-mt10] [--k 3] [--archs mlp sm care paco moore] [--pgx-archs sm mlp] \
        [--random-arch sm] [--score surrogate] [--eval-episodes 10] [--workers 2] [--note "what else ran"]

Every method gets the same environment budget, 2 × ``--meta-steps`` (B) env steps of PPO over all tasks:

- **single multitask policies** (MTL = the plain MLP on state + one-hot task id; Soft Modularization,
  CARE, PaCo, MOORE): one `policygradex train` on every task for 2B steps, from scratch;
- **PolicyGradEx** with a given architecture as every learner: `policygradex run --meta.arch A` with θ*
  meta-trained for B steps, the affinity estimated (``--score``), k groups, and each group's policy
  fine-tuned from θ* for B × |group| / n steps (the pipeline's proportional rule, B in all);
- **random grouping**: the same θ* as PolicyGradEx with ``--random-arch``, a random partition into k groups
  (compare-groupings' ``random-0``, so a later ``policygradex compare-groupings`` reuses it), its groups
  trained exactly as the estimated ones.

PolicyGradEx also spends the features' transitions (``samples_per_task`` per task) and, with rollout
scores, the scoring episodes; the table states them. Each method and seed is one work item of
``--workers`` processes (a PolicyGradEx item runs its pipeline serially inside its process); every
item is a folder under ``--work`` that a rerun reuses (finished) or resumes (killed). The table
(success rate per task and mean, ± 95% t-interval over seeds, the paper's number beside it, env-steps per
second, wall-clock) goes to ``--out`` after every finished item.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policygradex import pipeline, tasks
from policygradex.analysis.stats import mean_ci, paired_comparison
from policygradex.config import (
    EstimateConfig,
    GroupConfig,
    MetaConfig,
    RunConfig,
    check_seed,
    random_partition_seed,
    resolve,
    to_data,
)
from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.execute import ProcessExecutor, SerialExecutor
from policygradex.grouping.baselines import random_partition
from policygradex.io import read_json, write_text
from policygradex.rl.networks import ARCHS
from policygradex.rl.policy import PolicyConfig
from policygradex.rl.ppo import PPOConfig
from policygradex.rundir import eval_path, is_trained, open_run_dir
from policygradex.training import resolve_train, train_into

DEFAULT_OUT = Path("benchmarks/results/metaworld_mt10.md")
ARCH_NAMES = {"mlp": "MTL (plain MLP, one-hot task id)", "sm": "Soft Modularization", "care": "CARE",
              "paco": "PaCo", "moore": "MOORE"}
ARCH_SHORT = {"mlp": "MLP", "sm": "SM", "care": "CARE", "paco": "PaCo", "moore": "MOORE"}  # the paired table's
# ../shared/paper.md §4, MT10 success rates (SAC learners, the paper's budget); MOORE is not in the paper
PAPER = {"single-mlp": 71.3, "single-sm": 82.0, "single-care": 84.0, "single-paco": 73.1, "pgx-sm": 94.0,
         "random-sm": 58.2}


@dataclass(frozen=True)
class Item:
    """One method at one seed: everything a worker process needs."""

    kind: str  # "single" | "pgx"
    arch: str
    seed: int
    directory: str
    family: str
    meta_steps: int
    k: int
    score: str
    eval_episodes: int
    random_arch: str | None  # pgx only: also train the random grouping of this run

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.arch}"


def single_configs(family: tasks.TaskFamily, arch: str, total_steps: int, eval_episodes: int) -> tuple[PPOConfig, PolicyConfig]:
    """The `policygradex train` configuration of a single multitask policy (the family's preset)."""
    ppo, policy, _ = resolve_train(family, "default", total_steps=total_steps, arch=arch,  # type: ignore[arg-type]
                                   eval_episodes=eval_episodes)
    return ppo, policy


def run_config(item: Item) -> RunConfig:
    """The pipeline configuration of a PolicyGradEx item (serial inside its worker process)."""
    return RunConfig(k=item.k, seed=item.seed, meta=MetaConfig(total_steps=item.meta_steps, arch=item.arch),  # type: ignore[arg-type]
                     estimate=EstimateConfig(score=item.score),  # type: ignore[arg-type]
                     groups=GroupConfig(eval_episodes=item.eval_episodes), executor="serial")


def run_item(item: Item, _shared: None) -> list[dict[str, Any]]:
    """Train (or resume, or reuse) one method at one seed; its rows (a PolicyGradEx item also gives θ*
    alone and, with ``random_arch``, the random grouping)."""
    family = tasks.make(item.family)
    n = family.n
    if item.kind == "single":
        ppo, policy = single_configs(family, item.arch, 2 * item.meta_steps, item.eval_episodes)
        config = {"command": "train", "family": family.info(), "tasks": list(range(n)), "seed": item.seed,
                  "preset": "default", "ppo": to_data(ppo), "policy": to_data(policy), "init": None,
                  "eval_episodes": item.eval_episodes}
        out = open_run_dir(item.directory, config)
        res = train_into(out, family, list(range(n)), ppo, policy, item.seed, item.eval_episodes, tensorboard=False)
        steps, seconds = trained(out)
        score = res.evaluation.score(family.metric)
        return [{"method": item.name, "seed": item.seed, "reused": res.resumed, "score": [float(score[i]) for i in range(n)],
                 "env_steps": steps, "train_seconds": seconds,
                 "extra_steps": 0, "groups": None}]
    reused = (Path(item.directory) / "results.json").exists()
    result = pipeline.run(family, run_config(item), item.directory, threads=1)
    run = pipeline.reopen(item.directory)
    assert result.group_scores is not None and result.meta_scores is not None and result.groups is not None
    meta_steps, meta_seconds = trained(run.store.meta_dir)
    steps, seconds = trained(*(run.store.group_dir(g) for g in range(len(result.groups))))
    rows = [
        {"method": item.name, "seed": item.seed, "reused": reused, "score": [float(result.group_scores[i]) for i in range(n)],
         "env_steps": meta_steps + steps, "train_seconds": meta_seconds + seconds,
         "extra_steps": run.config.features.samples_per_task * n, "groups": result.groups},
        {"method": f"theta-{item.arch}", "seed": item.seed, "reused": reused, "score": [float(result.meta_scores[i]) for i in range(n)],
         "env_steps": meta_steps, "train_seconds": meta_seconds, "extra_steps": 0, "groups": None},
    ]
    if item.random_arch == item.arch:
        groups = random_partition(n, item.k, seed=random_partition_seed(item.seed, 0))
        where = [run.store.group_dir(g, "random-0") for g in range(len(groups))]
        reused = all(is_trained(d) for d in where)
        scores = pipeline.train_partitions(run, {"random-0": groups}, "groupings")["random-0"]
        steps, seconds = trained(*where)
        rows.append({"method": f"random-{item.arch}", "seed": item.seed, "reused": reused, "score": [float(scores[i]) for i in range(n)],
                     "env_steps": meta_steps + steps, "train_seconds": meta_seconds + seconds, "extra_steps": 0,
                     "groups": groups})
    return rows


def trained(*directories: Path) -> tuple[int, float]:
    """Env steps and seconds of training (evaluation excluded) of the policies trained in ``directories``."""
    records = [read_json(eval_path(d)) for d in directories]
    return sum(int(r["env_steps"]) for r in records), sum(float(r["wall_seconds"]) for r in records)


def _ci(values: list[float]) -> str:
    ci = mean_ci(values)
    if ci.n < 2:
        return f"{ci.mean:.1f}% (1 seed)"
    return f"{ci.mean:.1f}% ± {ci.half_width:.1f}"


def label(method: str, meta_steps: int) -> str:
    kind, arch = method.split("-", 1)
    name = ARCH_NAMES[arch]
    if kind == "single":
        return f"{name}, one policy" if arch != "mlp" else name
    if kind == "pgx":
        return f"**PolicyGradEx**, {name} groups"
    if kind == "random":
        return f"random grouping, {name} groups"
    return f"θ* alone ({name}, {meta_steps:,} steps: half the budget, for reference)"


def command(args: argparse.Namespace, meta_steps: int, seeds: int, workers: int) -> str:
    """The command line of this table's methods at a budget, seeds and workers."""
    return (f".venv/bin/python benchmarks/bench_metaworld_mt10.py --family {args.family} --meta-steps {meta_steps} "
            f"--seeds {seeds} --k {args.k} --archs {' '.join(args.archs)} --pgx-archs {' '.join(args.pgx_archs)} "
            f"--random-arch {args.random_arch} --score {args.score} --eval-episodes {args.eval_episodes} "
            f"--workers {workers} --work DIR")


def _mean_sps(rows: Iterable[dict[str, Any]]) -> float:
    """Mean env steps per second of training over these rows (0 when none)."""
    sps = [r["env_steps"] / r["train_seconds"] for r in rows if r["train_seconds"] > 0]
    return float(np.mean(sps)) if sps else 0.0


PAIRS = [("pgx-sm", "random-sm"), ("pgx-sm", "single-sm"), ("pgx-sm", "theta-sm"), ("pgx-mlp", "single-mlp"),
         ("pgx-mlp", "theta-mlp"), ("pgx-sm", "pgx-mlp")]


def paired_lines(methods: list[str], rows: dict[tuple[str, int], dict[str, Any]], seeds: list[int],
                 meta_steps: int) -> list[str]:
    """PolicyGradEx against its controls, paired by seed (same θ* for pgx/random/θ*; same seed otherwise),
    over the seeds both have finished (at least 2)."""
    out = []
    for a, b in PAIRS:
        both = [s for s in seeds if (a, s) in rows and (b, s) in rows]
        if a not in methods or b not in methods or len(both) < 2:
            continue
        va = [100 * float(np.mean(rows[(a, s)]["score"])) for s in both]
        vb = [100 * float(np.mean(rows[(b, s)]["score"])) for s in both]
        pc = paired_comparison(va, vb)
        out.append(f"| {short(a)} − {short(b)} | "
                   f"{', '.join(f'{x - y:+.1f}' for x, y in zip(va, vb, strict=True))} | {pc.diff.mean:+.1f} | "
                   f"[{pc.diff.low:+.1f}, {pc.diff.high:+.1f}] | {pc.wins:.0%} | {pc.ties:.0%} |")
    if not out:
        return []
    return ["", "PolicyGradEx against its controls, paired by seed (points of mean success; 95% paired t-interval; "
            "ahead / level: the share of seeds where the first is higher / equal; MTL = the plain MLP, SM = Soft "
            f"Modularization, θ* = the meta-policy alone after {meta_steps:,} steps):", "",
            "| difference | per seed | mean | 95% CI | ahead | level |", "|---|---|---:|---|---:|---:|", *out]


def short(method: str) -> str:
    """``pgx-sm`` → ``PolicyGradEx-SM``, ``single-mlp`` → ``MTL``: the paired table's names."""
    kind, arch = method.split("-", 1)
    name = ARCH_SHORT[arch]
    if kind == "single":
        return "MTL" if arch == "mlp" else name
    return {"pgx": "PolicyGradEx", "random": "random", "theta": "θ*"}[kind] + f"-{name}"


def report(args: argparse.Namespace, family: tasks.TaskFamily, methods: list[str],
           rows: dict[tuple[str, int], dict[str, Any]], seeds: list[int], started: float,
           load_start: tuple[float, float, float]) -> str:
    """The Markdown table of the rows so far."""
    ppo, policy = single_configs(family, "mlp", 2 * args.meta_steps, args.eval_episodes)
    load_end = os.getloadavg()
    pgx = [r for r in rows.values() if r["method"].startswith("pgx-")]
    extra = f"{pgx[0]['extra_steps']:,}" if pgx else "the features'"
    cmd = command(args, args.meta_steps, args.seeds, args.workers)
    sps = _mean_sps(rows.values())
    lines = [
        f"# `{family.full_name}`: success rates of multitask architectures and groupings (issue 14)",
        "",
        f"Produced by `{cmd}`. At the paper's scale on a bigger machine (the paper states no budget; Meta-World's "
        "SAC baselines train for 10⁷–2·10⁷ env steps per method), raise the budget, the seeds and the workers: "
        f"`{command(args, 10_000_000, 10, 32)}` trains every method for 2·10⁷ env steps with 10 seeds"
        + (f" (at this table's mean of {sps:,.0f} env steps/s per worker, about {2e7 / sps / 3600:.1f} h per method "
           "and seed on one core)" if sps else "") + ".",
        "",
        f"- **Budget: {2 * args.meta_steps:,} env steps of PPO over all {family.n} tasks for every method** (the "
        "column \"env steps trained\" gives what each trained: whole rollouts, so a little below). Single "
        f"policies train from scratch for all of it; PolicyGradEx and the random grouping meta-train θ* for "
        f"{args.meta_steps:,} steps and fine-tune each group from θ* for {args.meta_steps:,} × |group| / {family.n} "
        f"(k = {args.k}); PolicyGradEx also collects {extra} transitions for its gradient features and scores subsets "
        f"with `{args.score}` scores.",
        f"- **Learner: PPO** (the family's preset: {ppo.envs_per_task} episodes of {ppo.num_steps} steps per task per "
        f"rollout, GAE λ {ppo.gae_lambda}, learning rate {ppo.learning_rate:g}, observation normalisation "
        f"{'on' if policy.obs_norm else 'off'}), every architecture at its default size. The paper's numbers (like the "
        "MT10 baselines of Meta-World, CARE, PaCo and MOORE) come from **SAC** at far larger budgets: they stand beside "
        "ours, they are not comparable to them.",
        f"- Success: {family.source}; success rate over {args.eval_episodes} deterministic (mean-action) episodes per "
        f"task after training; mean over tasks per seed, then mean ± 95% t-interval over seeds {seeds}.",
        f"- Machine: {' '.join(filter(None, (platform.machine(), platform.processor())))}, {os.cpu_count()} cores; {args.workers} worker "
        f"process(es), 1 torch thread each; Python {platform.python_version()}, torch {torch.__version__}. "
        f"Load average (1/5/15 min) at the start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, "
        f"now {load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f}. "
        + (f"Conditions: {args.note}" if args.note else "No note on what else ran (pass --note)."),
        f"- {len(rows)} of {len(methods) * len(seeds)} results; this invocation {time.perf_counter() - started:.0f} s "
        f"of wall-clock ({sum(1 for r in rows.values() if r['reused'])} reused from earlier invocations).",
        "",
        "| method | per seed | mean ± CI | paper (SAC) | env steps trained | env-steps/s | train s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in methods:
        got = [rows[(m, s)] for s in seeds if (m, s) in rows]
        paper = f"{PAPER[m]:.1f}%" if m in PAPER and args.family == "metaworld-mt10" else "–"  # the paper's are MT10's
        if not got:
            lines.append(f"| {label(m, args.meta_steps)} | — | — | {paper} | — | — | — |")
            continue
        means = [100 * float(np.mean(r["score"])) for r in got]
        secs = np.mean([r["train_seconds"] for r in got])
        steps = np.mean([r["env_steps"] for r in got])
        lines.append(f"| {label(m, args.meta_steps)} | {', '.join(f'{v:.1f}%' for v in means)} | {_ci(means)} | "
                     f"{paper} | {steps:,.0f} | {_mean_sps(got):,.0f} | {secs:,.0f} |")
    lines += ["", "Success rate per task (mean over the finished seeds):", "",
              "| task | " + " | ".join(m for m in methods) + " |", "|---|" + "---:|" * len(methods)]
    for i, task in enumerate(family.tasks):
        vals = []
        for m in methods:
            task_scores = [rows[(m, s)]["score"][i] for s in seeds if (m, s) in rows]
            vals.append(f"{100 * np.mean(task_scores):.0f}%" if task_scores else "—")
        lines.append(f"| {i} {task.name} | " + " | ".join(vals) + " |")
    lines += paired_lines(methods, rows, seeds, args.meta_steps)
    grouped = [(m, s, r["groups"]) for (m, s), r in sorted(rows.items()) if r["groups"]]
    if grouped:
        lines += ["", "Groups:", ""] + [f"- {m}, seed {s}: `{g}`" for m, s, g in grouped]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="metaworld-mt10", choices=["metaworld-mt10", "metaworld-mt50"])
    ap.add_argument("--meta-steps", type=int, default=None,
                    help="B: θ*'s budget; every method gets 2B env steps (default: the family's pipeline budget)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 per method")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--archs", nargs="+", default=list(ARCH_NAMES), choices=list(ARCH_NAMES),
                    help="single multitask policies")
    ap.add_argument("--pgx-archs", nargs="+", default=["sm", "mlp"], choices=list(ARCH_NAMES),
                    help="PolicyGradEx runs, each with this architecture as every learner")
    ap.add_argument("--random-arch", default="sm", choices=list(ARCH_NAMES),
                    help="the random grouping reuses the PolicyGradEx run of this architecture (one of --pgx-archs)")
    ap.add_argument("--score", default="surrogate", choices=["rollout", "surrogate", "objective"],
                    help="how PolicyGradEx scores subsets (rollout scores cost about 1M Meta-World steps at k = 3)")
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="methods trained side by side (1: in this process)")
    ap.add_argument("--work", type=Path, required=True, help="folder of every method and seed (resumable)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the Markdown table")
    ap.add_argument("--note", default="", help="conditions (e.g. what else ran on the cores)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    assert set(ARCH_NAMES) == set(ARCH_SHORT) == set(ARCHS), "every architecture has a name in the table"
    try:
        family = tasks.make(args.family)
        if args.meta_steps is None:
            args.meta_steps = resolve(family, RunConfig()).meta.ppo.total_steps
        if args.seeds < 1 or args.eval_episodes < 1 or args.workers < 1 or args.meta_steps < 1:
            raise ConfigError(f"--seeds {args.seeds}, --eval-episodes {args.eval_episodes}, --workers {args.workers} "
                              f"and --meta-steps {args.meta_steps} must be at least 1")
        if args.random_arch not in args.pgx_archs:
            raise ConfigError(f"--random-arch {args.random_arch} is not among --pgx-archs {' '.join(args.pgx_archs)}; "
                              "add it there (the random grouping reuses that run's θ*)")
        seeds = [check_seed(s) for s in range(args.seeds)]
        items: list[Item] = []
        for s in seeds:  # seed-major: a stopped benchmark has every method at its first seed; long items first
            for arch in args.pgx_archs:  # bad settings fail in resolve, before any work
                item = Item("pgx", arch, s, str(args.work / f"pgx-{arch}" / f"seed_{s}"), args.family, args.meta_steps,
                            args.k, args.score, args.eval_episodes, args.random_arch)
                try:
                    resolve(family, run_config(item))
                except ConfigError as e:
                    raise ConfigError(f"--meta-steps {args.meta_steps}: {e}") from None
                items.append(item)
            for arch in args.archs:
                single_configs(family, arch, 2 * args.meta_steps, args.eval_episodes)
                items.append(Item("single", arch, s, str(args.work / f"single-{arch}" / f"seed_{s}"), args.family,
                                  args.meta_steps, args.k, args.score, args.eval_episodes, None))
    except PolicyGradExError as e:
        raise SystemExit(f"error: {e}") from None
    methods = ([f"pgx-{a}" for a in args.pgx_archs] + [f"random-{args.random_arch}"]
               + [f"single-{a}" for a in args.archs] + [f"theta-{a}" for a in args.pgx_archs])
    started, load_start = time.perf_counter(), os.getloadavg()
    executor = SerialExecutor() if args.workers == 1 else ProcessExecutor(args.workers)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for result in executor.map(run_item, items, None):
            for row in result:
                rows[(row["method"], row["seed"])] = row
                print(f"{row['method']} seed {row['seed']}: mean success {100 * np.mean(row['score']):.1f}%", flush=True)
            write_text(args.out, report(args, family, methods, rows, seeds, started, load_start))
    except PolicyGradExError as e:  # e.g. a folder made with other settings
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
