"""Does the estimated grouping beat the alternatives? The pipeline and every baseline grouping over several
seeds, with 95% confidence intervals and paired differences (issue #12).

    .venv/bin/python benchmarks/bench_groupings.py --family cartpole-10 --seeds 5 --executor process --workers 2 \
        --work runs/cmp-cartpole

Per seed s: `policygradex run --seed s`, then `compare-groupings` (random ×2, gradient similarity, TAG, one
policy for all tasks, one per task; the ground-truth grouping where `ground-truth` was run in that seed's folder).
The --work folder is the same as `policygradex compare-seeds --out`; everything resumes.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from policygradex import studies, tasks
from policygradex.config import RunConfig
from policygradex.io import write_text
from policygradex.report import grouping_label, skipped_lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="cartpole-10")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--random-seeds", type=int, default=2)
    ap.add_argument("--budget", default=None, choices=["proportional", "equal"])
    ap.add_argument("--executor", default="serial", choices=["serial", "process"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--meta-steps", type=int, default=None,
                    help="meta-training env steps (default: the family's pipeline budget); groups scale with it")
    ap.add_argument("--score", default=None, choices=["rollout", "surrogate", "objective"],
                    help="how the pipeline scores f(S, i) (default: the configuration's)")
    ap.add_argument("--with-truth", action="store_true",
                    help="also fine-tune every subset per seed and add the ground-truth grouping (expensive)")
    ap.add_argument("--truth-steps", type=int, default=None, help="env steps per subset of the ground truth")
    ap.add_argument("--note", default="", help="conditions (e.g. what else ran on the cores)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    family = tasks.make(args.family)
    cfg = RunConfig(executor=args.executor, workers=args.workers)
    if args.meta_steps is not None:
        cfg = replace(cfg, meta=replace(cfg.meta, total_steps=args.meta_steps))
    if args.score is not None:
        cfg = replace(cfg, estimate=replace(cfg.estimate, score=args.score))
    t = time.perf_counter()
    res = studies.compare_over_seeds(family, cfg, args.work, list(range(args.seeds)), args.random_seeds, args.budget,
                                     ground_truth_steps=args.truth_steps, with_truth=args.with_truth)
    wall = time.perf_counter() - t
    rule = res["budget"]
    metric = "success rate" if family.metric == "success" else "mean return"
    lines = [
        f"# Grouping comparison over seeds: `{family.full_name}`",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_groupings.py --family {args.family} --seeds {args.seeds} "
        f"--random-seeds {args.random_seeds}{' --budget ' + args.budget if args.budget else ''}"
        f"{f' --meta-steps {args.meta_steps}' if args.meta_steps else ''}{f' --score {args.score}' if args.score else ''}{' --with-truth' if args.with_truth else ''}"
        f"{f' --truth-steps {args.truth_steps}' if args.truth_steps else ''} --executor {args.executor} "
        f"--workers {args.workers} --work DIR` (the same as `policygradex compare-seeds`). Machine: "
        f"{platform.processor() or platform.machine()}, 2 cores, 1 torch thread per process, torch {torch.__version__}; "
        f"wall-clock of this call {wall / 60:.1f} min (runs already in DIR are reused)."
        + (f" Conditions: {args.note}" if args.note else ""),
        "",
        "Each seed runs the whole pipeline with the default settings"
        + (f" except meta-training for {args.meta_steps:,} env steps" if args.meta_steps else "")
        + (f"{' and' if args.meta_steps else ' except'} f(S, i) scored by `{args.score}`" if args.score else "")
        + f" (seed = run seed), then trains every grouping "
        f"from that seed's θ* with the same total budget (`{rule}` rule: "
        + ("a group gets the meta budget × its size / n" if rule == "proportional" else "every group gets the meta budget / k")
        + f"). The value per seed is the {metric} over all tasks, each task scored with its group's policy "
        "(deterministic actions, 20 episodes).",
        "",
        f"| grouping | mean over {len(res['seeds'])} seeds | 95% CI | estimated − this (paired) | 95% CI | seeds won |",
        "|---|---:|---|---:|---|---:|",
    ]
    for name, s in res["summary"].items():
        ci = "–" if s["ci95"] is None else f"[{s['ci95'][0]:.1f}, {s['ci95'][1]:.1f}]"
        p = res["estimated_minus"].get(name)
        paired = "" if p is None else f"{p['diff']:+.1f} | [{p['ci95'][0]:+.1f}, {p['ci95'][1]:+.1f}] | {p['wins']:.0%}"
        lines.append(f"| {grouping_label(name)} | {s['mean']:.1f} | {ci} | {paired or ' | | '} |")
    if res["skipped"]:
        lines += ["", "Left out of the summary (missing in some seed):", "", *skipped_lines(res["skipped"])]
    lines += ["", "Per seed:", "", "| seed | " + " | ".join(res["summary"]) + " | estimated groups |",
              "|---:|" + "---:|" * len(res["summary"]) + "---|"]
    for s in res["seeds"]:
        v = res["per_seed"][str(s)]
        lines.append(f"| {s} | " + " | ".join(f"{v[m]:.1f}" for m in res["summary"]) + f" | `{res['groups'][str(s)]['estimated']}` |")
    shown = [m for m in ("ground-truth", "gradient-similarity", "tag") if all(m in res["groups"][str(s)] for s in res["seeds"])]
    if shown:
        lines += ["", "Partitions per seed (the estimated one is in the table above):", "",
                  "| seed | " + " | ".join(shown) + " |", "|---:|" + "---|" * len(shown)]
        lines += [f"| {s} | " + " | ".join(f"`{res['groups'][str(s)][m]}`" for m in shown) + " |" for s in res["seeds"]]
    lines += truth_agreement_lines(res, family.n)
    if suffix_rule := (args.budget if args.budget and args.budget != cfg.groups.budget else None):
        lines += other_rule_lines(args.work, res, cfg.groups.budget, suffix_rule)
    lines.append("")
    suffix = f"_{args.budget}-budget" if args.budget and args.budget != cfg.groups.budget else ""
    out = args.out or Path(f"benchmarks/results/groupings_{args.family}{suffix}.md")
    write_text(out, "\n".join(lines))
    print("\n".join(lines))


def truth_agreement_lines(res: dict[str, Any], n: int) -> list[str]:
    """How close each grouping comes to the ground-truth grouping, per seed (NMI), where every seed has one:
    the estimate's agreement with the truth over seeds, beside the cheap baselines' (issue #12)."""
    from policygradex.analysis.agreement import nmi
    from policygradex.analysis.stats import mean_ci, paired_comparison

    groups = [res["groups"][str(s)] for s in res["seeds"]]
    if not all("ground-truth" in g for g in groups):
        return []
    names = [m for m in groups[0] if m not in ("ground-truth", "one-group", "single-task") and all(m in g for g in groups)]
    values = {m: [nmi(g[m], g["ground-truth"], n) for g in groups] for m in names}
    rand = [name for name in names if name.startswith("random-")]
    if rand:
        values["random"] = [sum(values[m][j] for m in rand) / len(rand) for j in range(len(groups))]
        names = [m for m in names if m not in rand] + ["random"]
    lines = ["", "Agreement with each seed's ground-truth grouping (NMI of the partitions; k = 1 and k = n are left out: "
             "their NMI to any partition is fixed by its shape), and the estimated grouping's NMI minus each "
             "baseline's, paired by seed:", "",
             "| grouping | NMI per seed | mean | 95% CI | estimated − this | 95% CI | seeds ahead |",
             "|---|---|---:|---|---:|---|---:|"]
    for m in names:
        v = values[m]
        ci = mean_ci(v)
        interval = "–" if ci.n < 2 else f"[{ci.low:.2f}, {ci.high:.2f}]"
        paired = " | | "
        if m != "estimated" and len(v) > 1:
            pc = paired_comparison(values["estimated"], v)
            paired = f"{pc.diff.mean:+.2f} | [{pc.diff.low:+.2f}, {pc.diff.high:+.2f}] | {pc.wins:.0%}"
        lines.append(f"| {grouping_label(m)} | {', '.join(f'{x:.2f}' for x in v)} | {ci.mean:.2f} | {interval} | {paired} |")
    return lines


def other_rule_lines(work: Path, res: dict, default_rule: str, rule: str) -> list[str]:  # type: ignore[type-arg]
    """The same seeds under the configuration's own budget rule (each seed's ``groupings.json``, where
    compare-groupings ran with it), beside this rule: does the conclusion depend on the rule?"""
    from policygradex.analysis.stats import paired_comparison
    from policygradex.io import read_json

    seeds = res["seeds"]
    files = [work / f"seed_{s}" / "groupings.json" for s in seeds]
    if not all(f.exists() for f in files):
        return ["", f"(No `{default_rule}` comparison in every seed's folder, so no side-by-side with it.)"]
    other = [read_json(f) for f in files]

    def value(g: dict, name: str) -> float | None:  # type: ignore[type-arg]
        if name == "random":
            return float(g["random_mean"])
        if name == "theta*":
            return float(g["meta_mean"])
        p = g["partitions"].get(name)
        return None if p is None else float(p["mean"])

    lines = ["", f"The same {len(seeds)} seeds under the `{default_rule}` rule (each seed's groupings.json), and the "
             f"estimated grouping minus each baseline, paired by seed, under both rules:", "",
             f"| grouping | {default_rule}: mean | {rule}: mean | estimated − this, {default_rule} | 95% CI | "
             f"estimated − this, {rule} | 95% CI |", "|---|---:|---:|---:|---|---:|---|"]
    for name in res["summary"]:
        a = [value(g, name) for g in other]
        if any(x is None for x in a):
            continue
        av = [float(x) for x in a if x is not None]
        est = [value(g, "estimated") for g in other]
        mine = res["estimated_minus"].get(name)
        if name == "estimated" or mine is None:
            lines.append(f"| {grouping_label(name)} | {sum(av) / len(av):.1f} | {res['summary'][name]['mean']:.1f} | | | | |")
            continue
        pc = paired_comparison([float(x) for x in est if x is not None], av)
        lines.append(f"| {grouping_label(name)} | {sum(av) / len(av):.1f} | {res['summary'][name]['mean']:.1f} | "
                     f"{pc.diff.mean:+.1f} | [{pc.diff.low:+.1f}, {pc.diff.high:+.1f}] | {mine['diff']:+.1f} | "
                     f"[{mine['ci95'][0]:+.1f}, {mine['ci95'][1]:+.1f}] |")
    return lines


if __name__ == "__main__":
    main()
