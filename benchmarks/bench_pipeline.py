"""Benchmark: ``policygradex run`` end to end, stage by stage, optionally followed by the grouping
comparison of the paper's main table (one policy for all tasks, random and gradient-similarity groupings,
each trained exactly like the estimated groups). Writes ``benchmarks/results/pipeline_<family>.md``.

    .venv/bin/python benchmarks/bench_pipeline.py [--family cartpole-10] [--seed 0] [--executor serial]
        [--compare --random-seeds 2] [--work DIR] [--meta-steps N] [--score rollout] ...

``--work DIR`` keeps the run directory: a killed benchmark resumes where it stopped (the stage
timings of earlier processes are kept in ``DIR/bench_timings.json``).
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

from policygradex import pipeline, studies, tasks
from policygradex.io import read_json, write_json, write_text
from policygradex.rundir import RunStore

# The paper's main table (../shared/paper.md §4): mean return on 50 unseen test tasks after MAML adaptation.
PAPER: dict[str, dict[str, float]] = {
    "cartpole": {"multitask": 145.9, "random": 144.1, "gradient-similarity": 142.0, "estimated": 159.2},
    "highway": {"multitask": 140.0, "random": 143.4, "gradient-similarity": 135.6, "estimated": 153.5},
    "lunarlander": {"multitask": 53.8, "random": 73.1, "gradient-similarity": 80.8, "estimated": 82.8},
}


def paper_column(family: str) -> dict[str, float]:
    for prefix, row in PAPER.items():
        if family.startswith(prefix):
            return row
    return {}


def mean_standard_error(store: RunStore, grouping: str | None, num_groups: int, n: int, metric: str) -> float:
    """Standard error of the mean score over all n tasks, from the evaluation episodes' spread
    (returns: their standard deviation; success rates: the Bernoulli one).

    ``grouping``: None for the estimated groups, a baseline's name, or ``"meta"`` for θ* alone."""
    var = 0.0
    evals = (
        [store.load_meta_eval()] if grouping == "meta"
        else [store.load_eval(store.group_dir(g, grouping)) for g in range(num_groups)]
    )
    for ev in evals:
        if metric == "success":
            variances = [float(q) * (1 - float(q)) for q in ev["success_rate"].values()]
        else:
            variances = [float(v) ** 2 for v in ev["std_return"].values()]
        var += sum(variances) / ev["episodes"]
    return float(np.sqrt(var)) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="cartpole-10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--executor", default="serial", choices=["serial", "process"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compare", action="store_true", help="also train the baseline groupings (studies.compare_groupings)")
    ap.add_argument("--random-seeds", type=int, default=2, help="random groupings averaged with --compare")
    ap.add_argument("--work", type=Path, default=None, help="run directory to keep (and resume); default: a temporary one")
    ap.add_argument("--meta-steps", type=int, default=None, help="meta-training env steps (default: the family's)")
    ap.add_argument("--samples-per-task", type=int, default=None)
    ap.add_argument("--num-subsets", type=int, default=None)
    ap.add_argument("--score", default=None, choices=["rollout", "surrogate", "objective"],
                    help="how f(S, i) is scored (default: the pipeline's, surrogate)")
    ap.add_argument("--episodes", type=int, default=None, help="rollout episodes per (subset, task)")
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--note", default="", help="conditions of the run to state in the table (e.g. other jobs on the cores)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    family = tasks.make(args.family)
    work = args.work or Path(tempfile.mkdtemp(prefix="pgx-bench-")) / "run"
    cfg = pipeline.RunConfig(
        k=args.k, seed=args.seed, preset=args.preset, executor=args.executor, workers=args.workers,
        meta=pipeline.MetaConfig(total_steps=args.meta_steps),
        features=pipeline.FeatureConfig(samples_per_task=args.samples_per_task),
        estimate=pipeline.EstimateConfig(num_subsets=args.num_subsets, episodes=args.episodes,
                                         **({"score": args.score} if args.score else {})),
        groups=pipeline.GroupConfig(eval_episodes=args.eval_episodes),
    )
    run = pipeline.open_run(family, cfg, work)
    timings_path = run.dir / "bench_timings.json"  # the benchmark's own file beside the run's artifacts
    timings: dict[str, float] = read_json(timings_path) if timings_path.exists() else {}
    for stage in pipeline.STAGES:
        pipeline.run_stage(run, stage)
        # A stage resumed in a later process adds its time to that of the killed one.
        timings[stage] = timings.get(stage, 0.0) + run.timings[stage]
        write_json(timings_path, timings)
    cg = None
    if args.compare:
        t = time.perf_counter()
        cg = studies.compare_groupings(run, seeds=args.random_seeds)
        timings["compare"] = timings.get("compare", 0.0) + time.perf_counter() - t
        write_json(timings_path, timings)
    total = sum(v for k, v in timings.items() if k != "compare")
    res = run.store.load_results()
    c = run.config
    e = c.estimate
    flags = [f"--family {args.family}", f"--seed {args.seed}", f"--k {args.k}", f"--preset {args.preset}",
             f"--executor {args.executor}"]
    flags += [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
              if k in ("meta_steps", "samples_per_task", "num_subsets", "episodes") and v is not None]
    if args.score is not None:
        flags.append(f"--score {args.score}")
    if args.eval_episodes != 20:
        flags.append(f"--eval-episodes {args.eval_episodes}")
    if args.compare:
        flags.append(f"--compare --random-seeds {args.random_seeds}")
    if args.out is not None:
        flags.append(f"--out {args.out}")
    scoring = f"rollout ({e.episodes} episodes per task)" if e.score == "rollout" else "the rollout-free first-order surrogate"
    lines = [
        f"# `policygradex run --family {args.family}"
        f"{f' --estimate.score {e.score}' if e.score != pipeline.EstimateConfig().score else ''}` end to end",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_pipeline.py {' '.join(flags)}`. Machine: "
        f"{platform.processor() or platform.machine()}, 2 cores, 1 torch thread, Python {platform.python_version()}, "
        f"torch {torch.__version__}, gymnasium {gym.__version__}; family source: {family.source}.",
        "",
        f"Settings: meta-training {c.meta.ppo.total_steps:,} env steps; "
        f"{c.features.samples_per_task} samples per task, d = {c.features.d}; m = {e.num_subsets} subsets "
        f"of {e.subset_size} tasks (≥ {e.min_coverage} per pair); λ = {e.l2}; ‖Δθ‖ = {e.relative_norm}·‖θ*‖; "
        f"scores by {scoring}; `{e.affinity}` affinity; {c.method} clustering, k = {c.k}; "
        f"group policies fine-tuned from θ* (meta budget × group size / n each, {c.meta.ppo.total_steps:,} "
        f"steps over all groups); {c.groups.eval_episodes} evaluation episodes per task ({family.metric}).",
        *(["", f"Conditions: {args.note}"] if args.note else []),
        "",
        "| stage | wall-clock (s) |",
        "|---|---:|",
    ]
    for stage in pipeline.STAGES:
        lines.append(f"| {stage} | {timings.get(stage, 0.0):.1f} |")
    lines.append(f"| **total** | **{total:.0f}** ({total / 60:.1f} min) |")
    if "compare" in timings:
        lines.append(f"| baseline groupings (`--compare`, not in the total) | {timings['compare']:.1f} |")
    lines += [
        "",
        f"Groups: `{res['groups']}`",
        "",
        "| task | name | group | θ* alone | group policy |",
        "|---:|---|---:|---:|---:|",
    ]
    for t in res["tasks"]:
        lines.append(f"| {t['index']} | {t['name']} | {t['group']} | {t['meta']:.1f} | {t['group_policy']:.1f} |")
    lines += [f"| **mean** | | | **{res['mean_meta']:.1f}** | **{res['mean_group_policy']:.1f}** |", ""]
    if cg is not None:
        paper = paper_column(args.family)
        p = cg["partitions"]
        randoms = [kk for kk in p if kk.startswith("random-")]

        def sem(name: str) -> float:
            return mean_standard_error(run.store, None if name == "estimated" else name,
                                       len(p[name]["groups"]), family.n, family.metric)

        rows = [
            ("θ* alone (multi-task policy, meta budget)", cg["meta_mean"],
             mean_standard_error(run.store, "meta", 0, family.n, family.metric), "multitask", "—"),
            ("one policy for all tasks (k = 1), fine-tuned like the groups", p["one-group"]["mean"], sem("one-group"),
             "", str(p["one-group"]["groups"])),
            (f"random grouping (mean of {args.random_seeds})", cg["random_mean"],
             float(np.sqrt(np.mean([sem(r) ** 2 for r in randoms]) / len(randoms))), "random",
             "; ".join(str(p[r]["groups"]) for r in randoms)),
            ("gradient-similarity grouping", p["gradient-similarity"]["mean"], sem("gradient-similarity"),
             "gradient-similarity", str(p["gradient-similarity"]["groups"])),
            *([("TAG grouping (lookahead affinity over the meta-training)", p["tag"]["mean"], sem("tag"), "",
                str(p["tag"]["groups"]))] if "tag" in p else []),
            ("**PolicyGradEx** (estimated grouping)", p["estimated"]["mean"], sem("estimated"), "estimated",
             str(p["estimated"]["groups"])),
        ]
        lines += [
            f"## Beside the paper's main table ({family.metric}, mean over the {family.n} training tasks)",
            "",
            "Every grouping is trained from θ* with the same total budget (the meta budget split by group size). "
            "The paper's numbers are mean returns on 50 unseen test tasks after MAML adaptation (200 steps), "
            "with environment settings it does not state; ours are the training tasks' own returns under each "
            "grouping's policies, with this family's settings (see the family's docstring), so only the order "
            "of the rows is comparable, not the values.",
            "",
            "± is the standard error of the mean over tasks from the evaluation episodes alone (it leaves out "
            "the training seed's variance, which only more seeds would show).",
            "",
            "| method | ours | ± | paper | groups |",
            "|---|---:|---:|---:|---|",
        ]
        for label, ours, err, key, groups in rows:
            ref = paper.get(key)
            lines.append(f"| {label} | {ours:.1f} | {err:.1f} | {'' if ref is None else f'{ref:.1f}'} | `{groups}` |")
        est = p["estimated"]["mean"]
        lines += [
            "",
            f"Estimated grouping vs random: {100 * (est - cg['random_mean']) / abs(cg['random_mean']):+.1f}%; "
            f"vs gradient-similarity: {100 * (est - p['gradient-similarity']['mean']) / abs(p['gradient-similarity']['mean']):+.1f}%; "
            f"vs one policy (k = 1): {100 * (est - p['one-group']['mean']) / abs(p['one-group']['mean']):+.1f}%.",
            "",
        ]
    U = run.store.load_affinity(family.n)
    lines += ["Affinity U (task order 0..n−1):", "", "```", np.array2string(U, precision=2, max_line_width=200), "```", ""]
    out = args.out or Path(f"benchmarks/results/pipeline_{args.family}.md")
    write_text(out, "\n".join(lines))
    print("\n".join(lines))
    if args.work is None:
        shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
