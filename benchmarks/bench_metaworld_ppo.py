"""Which PPO settings work for multitask PPO on Meta-World? A short measured sweep (issue 14, item 2).

    .venv/bin/python benchmarks/bench_metaworld_ppo.py --out runs/metaworld_ppo_sweep --workers 2 \
        [--total-steps 1000000] [--seeds 2] [--obs-norm on off] [--gae-lambda 0.95 0.97] \
        [--episodes-per-rollout 1 4] [--eval-episodes 10] [--note "what else ran"]

Every cell of the grid (observation normalisation × GAE λ × episodes per task per rollout, i.e.
``envs_per_task`` with 500-step rollouts) is one `policygradex train` on all tasks of the family (the
family's preset with the cell's three settings replaced), at the same env-step budget, for every seed;
then the success rate of each task over ``--eval-episodes`` deterministic episodes. Each (cell, seed)
is a folder ``--out/<cell>/seed_<s>/`` of the same layout as `policygradex train --out`: a finished one
is reused, a killed one resumes from its training state, and one made with other settings is refused.
The table (mean success over tasks per seed, mean ± 95% t-interval over seeds, per-task success, env
steps per second of training, wall-clock) goes to ``--report`` after every finished run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policygradex import tasks
from policygradex.analysis.stats import mean_ci
from policygradex.config import check_seed, to_data
from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.execute import ProcessExecutor, SerialExecutor
from policygradex.io import read_json, write_text
from policygradex.rl.policy import PolicyConfig
from policygradex.rl.ppo import PPOConfig
from policygradex.rundir import eval_path, open_run_dir
from policygradex.training import resolve_train, train_into

DEFAULT_REPORT = Path("benchmarks/results/metaworld_ppo_sweep.md")


@dataclass(frozen=True)
class Cell:
    """One setting of the grid."""

    obs_norm: bool
    gae_lambda: float
    episodes: int  # per task per rollout: envs_per_task with whole-episode rollouts

    @property
    def name(self) -> str:
        return f"obsnorm-{'on' if self.obs_norm else 'off'}_lambda-{self.gae_lambda:g}_episodes-{self.episodes}"


@dataclass(frozen=True)
class Item:
    """One training: a cell and a seed, with everything a worker process needs."""

    family: str
    cell: Cell
    seed: int
    directory: str
    ppo: dict[str, Any]
    policy: dict[str, Any]
    eval_episodes: int


def configs(family: tasks.TaskFamily, cell: Cell, total_steps: int) -> tuple[PPOConfig, PolicyConfig]:
    """The `policygradex train` configuration of ``cell``: the family's preset with the cell's settings.

    Raises:
        ConfigError: a budget below one rollout of this cell.
    """
    try:
        ppo, policy, _ = resolve_train(family, "default", total_steps=total_steps, envs_per_task=cell.episodes,
                                       obs_norm=cell.obs_norm)
    except ConfigError:
        rollout = PPOConfig(**{**dict(family.ppo_overrides), "envs_per_task": cell.episodes}).batch_size(family.n)
        raise ConfigError(
            f"--total-steps {total_steps} is less than one rollout of cell {cell.name} ({rollout} env steps); "
            "raise --total-steps or leave that --episodes-per-rollout out"
        ) from None
    return replace(ppo, gae_lambda=cell.gae_lambda), policy


def train_cell(item: Item, _shared: None) -> dict[str, Any]:
    """Train (or resume, or reuse) one (cell, seed) exactly as `policygradex train` does; its result."""
    family = tasks.make(item.family)
    ppo, policy = PPOConfig(**item.ppo), PolicyConfig(**item.policy)
    task_idx = list(range(family.n))
    config = {
        "command": "train", "family": family.info(), "tasks": task_idx, "seed": item.seed, "preset": "default",
        "ppo": to_data(ppo), "policy": to_data(policy), "init": None, "eval_episodes": item.eval_episodes,
    }
    out = open_run_dir(item.directory, config)
    t = time.perf_counter()
    res = train_into(out, family, task_idx, ppo, policy, item.seed, item.eval_episodes, tensorboard=False)
    record = read_json(eval_path(out))
    score = res.evaluation.score(family.metric)
    return {
        "cell": item.cell.name, "seed": item.seed, "reused": res.resumed,
        "score": [float(score[i]) for i in task_idx], "env_steps": int(record["env_steps"]),
        "train_seconds": float(record["wall_seconds"]), "call_seconds": time.perf_counter() - t,
    }


def _fmt_ci(values: list[float]) -> str:
    ci = mean_ci(values)
    if ci.n < 2:
        return f"{ci.mean:.3f} (1 seed)"
    return f"{ci.mean:.3f} ± {ci.half_width:.3f}"


def report(args: argparse.Namespace, family: tasks.TaskFamily, cells: list[Cell], preset: Cell | None,
           results: dict[tuple[str, int], dict[str, Any]], seeds: list[int], started: float,
           load_start: tuple[float, float, float]) -> str:
    """The Markdown report of the results so far."""
    ppo0, _ = configs(family, cells[0], args.total_steps)
    metric = "success rate" if family.metric == "success" else "mean return"
    done = len(results)
    total = len(cells) * len(seeds)
    load_end = os.getloadavg()

    lines = [
        f"# Multitask PPO settings on `{family.full_name}`: a short sweep",
        "",
        "Produced by `.venv/bin/python benchmarks/bench_metaworld_ppo.py "
        f"--family {args.family} --total-steps {args.total_steps} --seeds {args.seeds} "
        f"--obs-norm {' '.join(args.obs_norm)} --gae-lambda {' '.join(f'{x:g}' for x in args.gae_lambda)} "
        f"--episodes-per-rollout {' '.join(map(str, args.episodes_per_rollout))} --eval-episodes {args.eval_episodes} "
        f"--workers {args.workers} --out DIR{f' --report {args.report}' if args.report != DEFAULT_REPORT else ''}` "
        f"(DIR: the trainings' folders).",
        "",
        f"- Family: {family.source}; {family.n} tasks; {metric} over {args.eval_episodes} deterministic "
        f"(mean-action) episodes per task after training.",
        f"- Budget: {args.total_steps:,} env steps over all tasks per training; seeds {seeds}; every cell "
        f"otherwise the family's preset (learning rate {ppo0.learning_rate:g}, {ppo0.update_epochs} epochs × "
        f"{ppo0.num_minibatches} minibatches, clip {ppo0.clip_coef}, max_grad_norm {ppo0.max_grad_norm}, "
        f"ent_coef {ppo0.ent_coef}, γ {ppo0.gamma}, {ppo0.num_steps}-step rollouts), MLP "
        f"{PolicyConfig.depth}×{PolicyConfig.width}. The original MT10 baselines were trained with SAC; this is PPO.",
        f"- Machine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores; "
        f"{args.workers} worker process(es), 1 torch thread each; Python {platform.python_version()}, "
        f"torch {torch.__version__}.",
        f"- Load average (1/5/15 min) at the start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, "
        f"now {load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f}. "
        + (f"Conditions: {args.note}" if args.note else "No note on what else ran (pass --note)."),
        f"- {done} of {total} trainings finished; this invocation {time.perf_counter() - started:.0f} s of "
        f"wall-clock ({sum(1 for r in results.values() if r['reused'])} reused from earlier invocations).",
        "",
        f"## Mean {metric} over tasks",
        "",
        "Mean ± 95% t-interval over seeds (n = number of seeds; with 2 seeds the interval is wide: "
        "t₀.₉₇₅,₁ = 12.7). Env-steps/s: training only (rollouts + updates), mean over seeds. "
        + ("**preset** marks the family's own setting." if preset is not None else ""),
        "",
        "| obs_norm | GAE λ | episodes / task / rollout | updates | per seed | mean ± CI | env-steps/s | train s |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for cell in cells:
        rows = [results[(cell.name, s)] for s in seeds if (cell.name, s) in results]
        ppo, _ = configs(family, cell, args.total_steps)
        label = ("**preset** " if cell == preset else "") + ("on" if cell.obs_norm else "off")
        if not rows:
            lines.append(f"| {label} | {cell.gae_lambda:g} | {cell.episodes} | {ppo.num_iterations(family.n)} | — | — | — | — |")
            continue
        means = [float(np.mean(r["score"])) for r in rows]
        sps = np.mean([r["env_steps"] / r["train_seconds"] for r in rows])
        secs = np.mean([r["train_seconds"] for r in rows])
        lines.append(
            f"| {label} | {cell.gae_lambda:g} | {cell.episodes} | {ppo.num_iterations(family.n)} | "
            f"{', '.join(f'{m:.3f}' for m in means)} | {_fmt_ci(means)} | {sps:,.0f} | {secs:.0f} |"
        )
    lines += ["", f"## {metric.capitalize()} per task (mean over the finished seeds)", ""]
    lines.append("| task | " + " | ".join(c.name for c in cells) + " |")
    lines.append("|---|" + "---:|" * len(cells))
    for i, t in enumerate(family.tasks):
        vals = []
        for cell in cells:
            rows = [results[(cell.name, s)]["score"][i] for s in seeds if (cell.name, s) in results]
            vals.append(f"{np.mean(rows):.2f}" if rows else "—")
        lines.append(f"| {i} {t.name} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="metaworld-mt10")
    ap.add_argument("--total-steps", type=int, default=1_000_000, help="env steps per training (all tasks)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds 0..S-1 per cell")
    ap.add_argument("--obs-norm", nargs="+", default=["on", "off"], choices=["on", "off"])
    ap.add_argument("--gae-lambda", nargs="+", type=float, default=[0.95, 0.97])
    ap.add_argument("--episodes-per-rollout", nargs="+", type=int, default=[1, 4],
                    help="envs_per_task: whole episodes per task in each rollout")
    ap.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per task")
    ap.add_argument("--workers", type=int, default=2, help="trainings run side by side (1: in this process)")
    ap.add_argument("--out", type=Path, required=True, help="folder of the cells (resumable)")
    ap.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="the Markdown table")
    ap.add_argument("--note", default="", help="conditions (e.g. what else ran on the cores)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    family = tasks.make(args.family)
    if args.seeds < 1 or args.eval_episodes < 1 or args.workers < 1:
        raise SystemExit(f"error: --seeds {args.seeds}, --eval-episodes {args.eval_episodes} and --workers "
                         f"{args.workers} must be at least 1")
    if any(not 0 <= lam <= 1 for lam in args.gae_lambda) or any(e < 1 for e in args.episodes_per_rollout):
        raise SystemExit("error: --gae-lambda values must lie in [0, 1] and --episodes-per-rollout values be ≥ 1")
    seeds = [check_seed(s) for s in range(args.seeds)]
    cells = [Cell(o == "on", lam, e) for o, lam, e in itertools.product(
        dict.fromkeys(args.obs_norm), dict.fromkeys(args.gae_lambda), dict.fromkeys(args.episodes_per_rollout))]
    ppo_preset = replace(PPOConfig(), **dict(family.ppo_overrides))
    preset_cell = Cell(bool(family.policy_overrides.get("obs_norm", False)), ppo_preset.gae_lambda, ppo_preset.envs_per_task)
    items = []
    for s in seeds:  # seed-major: a stopped sweep has every cell at its first seed
        for cell in cells:
            try:
                ppo, policy = configs(family, cell, args.total_steps)
            except ConfigError as e:
                raise SystemExit(f"error: {e}") from None
            items.append(Item(args.family, cell, s, str(args.out / cell.name / f"seed_{s}"), asdict(ppo), asdict(policy),
                              args.eval_episodes))
    started, load_start = time.perf_counter(), os.getloadavg()
    executor = SerialExecutor() if args.workers == 1 else ProcessExecutor(args.workers)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for res in executor.map(train_cell, items, None):
            results[(res["cell"], res["seed"])] = res
            write_text(args.report, report(args, family, cells, preset_cell if preset_cell in cells else None,
                                           results, seeds, started, load_start))
            took = "reused" if res["reused"] else f"{res['train_seconds']:.0f} s of training"
            print(f"{res['cell']} seed {res['seed']}: mean score {np.mean(res['score']):.3f} ({took})", flush=True)
    except PolicyGradExError as e:  # e.g. a cell folder made with other settings
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
