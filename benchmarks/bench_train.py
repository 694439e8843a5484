"""Benchmark: multitask PPO on cartpole-10 at the default budget, a single-task PPO sanity check on
Gymnasium's CartPole-v1, and environment throughput of the batched family against Gymnasium's own
vectorised CartPole-v1 — all in one run. Writes ``benchmarks/results/train_cartpole.md``.

    .venv/bin/python benchmarks/bench_train.py [--seed 0] [--out benchmarks/results/train_cartpole.md]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from policygradex import tasks
from policygradex.io import write_text
from policygradex.rl.evaluate import evaluate
from policygradex.rl.ppo import PPOConfig, ppo_config_for, train


def env_throughput(venv, steps: int, seed: int) -> float:
    """Random-action env-steps/s of a TaskVecEnv (no policy)."""
    venv.reset(seed)
    rng = np.random.default_rng(seed)
    acts = rng.integers(0, 2, (steps, venv.num_envs))
    t = time.perf_counter()
    for a in acts:
        venv.step(a)
    return steps * venv.num_envs / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=20, help="evaluation episodes per task")
    ap.add_argument("--single-steps", type=int, default=500_000, help="budget of the single-task CartPole-v1 run")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/train_cartpole.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    family = tasks.make("cartpole-10")
    single = tasks.from_gymnasium("CartPole-v1", [{}], name="cartpole-v1", task_names=["CartPole-v1"])

    # 1. environment throughput, same 40 environments, random actions
    fam_sps = env_throughput(family.make_vec(range(10), 4), 2000, args.seed)
    gym_sps = env_throughput(single.make_vec([0], 40), 500, args.seed)

    # 2. multitask PPO on cartpole-10
    cfg = ppo_config_for(family, "default")
    t0 = time.perf_counter()
    res = train(family, range(family.n), cfg, args.seed)
    fam_wall = time.perf_counter() - t0
    ev = evaluate(res.policy, family, range(family.n), args.episodes, seed=args.seed + 1)

    # 3. single-task PPO sanity check on gymnasium.make("CartPole-v1") (SyncVectorEnv, 4 envs)
    scfg = PPOConfig(total_steps=args.single_steps)
    t0 = time.perf_counter()
    sres = train(single, [0], scfg, args.seed)
    single_wall = time.perf_counter() - t0
    sev = evaluate(sres.policy, single, [0], args.episodes, seed=args.seed + 1)

    lines = [
        "# Multitask PPO on cartpole-10, and a single-task PPO check",
        "",
        "Produced by `.venv/bin/python benchmarks/bench_train.py` "
        f"(seed {args.seed}, {args.episodes} evaluation episodes per task, deterministic actions).",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread, "
        f"Python {platform.python_version()}, torch {torch.__version__}, gymnasium {gym.__version__}.",
        "",
        "## cartpole-10 (default budget)",
        "",
        f"Budget: {res.env_steps:,} env steps over 10 tasks ({cfg.envs_per_task} envs per task, {cfg.num_steps} steps "
        f"per rollout); wall-clock {fam_wall:.0f} s, {res.env_steps / fam_wall:,.0f} env-steps/s including updates.",
        "",
        "| task | name | length | masspole | gravity | force_mag | mean return | std |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i, t in enumerate(family.tasks):
        p = t.params
        lines.append(
            f"| {i} | {t.name} | {p['length']} | {p['masspole']} | {p['gravity']} | {p['force_mag']} | "
            f"{ev.mean_return[i]:.1f} | {ev.std_return[i]:.1f} |"
        )
    mean = float(np.mean(list(ev.mean_return.values())))
    lines += [
        f"| **mean** | | | | | | **{mean:.1f}** | |",
        "",
        "## Single-task PPO on Gymnasium's CartPole-v1 (sanity check of the PPO)",
        "",
        f"Budget: {sres.env_steps:,} env steps (4 envs, `gymnasium.make('CartPole-v1')` in a SyncVectorEnv); "
        f"wall-clock {single_wall:.0f} s. Mean return over {args.episodes} episodes: **{sev.mean_return[0]:.1f}** "
        f"(target ≥ 475: {'met' if sev.mean_return[0] >= 475 else 'NOT met'}).",
        "",
        "## Environment throughput (random actions, 40 environments, no policy)",
        "",
        "| environment | env-steps/s |",
        "|---|---:|",
        f"| cartpole-10 batched (`CartPoleVectorEnv`, per-env parameters) | {fam_sps:,.0f} |",
        f"| `gymnasium.make('CartPole-v1')` × 40 in `SyncVectorEnv` | {gym_sps:,.0f} |",
        f"| ratio | {fam_sps / gym_sps:.1f}× |",
        "",
    ]
    write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
