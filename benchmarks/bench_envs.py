"""Benchmark: environment throughput of every family, random actions, no policy (issue #5).

For each family two numbers: its single Gymnasium environment stepped alone (``family.make_env(i)``,
every task in turn, resetting where an episode ends), and the family's batched form
(``family.make_vec(range(n), 4)``: 4 environments per task, same-step autoreset, one-hot ids).
Construction (for Meta-World: the benchmark object with its goals) is timed apart. For highway-10 the
single environments are also timed with highway-env's own pandas-based observation, against the
NumPy one the family uses. Writes ``benchmarks/results/envs.md``.

    .venv/bin/python benchmarks/bench_envs.py [--seconds 10] [--seed 0] [--families lunarlander-10 ...]
    .venv/bin/python benchmarks/bench_envs.py --steps 5 --out /tmp/envs.md   # quick check that it runs

By default each measurement runs for ``--seconds`` of wall-clock (the families differ by 100× in speed);
``--steps`` fixes the number of steps instead (per task for the single environments, vector steps for
the batched form).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policygradex import tasks
from policygradex.errors import MissingExtraError
from policygradex.io import write_text
from policygradex.tasks.base import TaskFamily

DEFAULT_FAMILIES = (
    "cartpole-10",
    "lunarlander-10",
    "highway-10",
    "halfcheetah-vel-10",
    "metaworld-mt10",
    "metaworld-mt50",
)
ENVS_PER_TASK = 4


def random_actions(family: TaskFamily, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform random actions of the family's action space, with a leading ``shape``."""
    space = family.action_space
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, int(space.n), shape)
    assert isinstance(space, gym.spaces.Box)
    return rng.uniform(space.low, space.high, (*shape, *space.shape)).astype(space.dtype)


def _run(step: Any, steps: int | None, seconds: float) -> tuple[int, float]:
    """Call ``step()`` ``steps`` times, or until ``seconds`` have passed; returns (calls, wall-clock)."""
    n, t0 = 0, time.perf_counter()
    while (n < steps) if steps is not None else (time.perf_counter() - t0 < seconds):
        step()
        n += 1
    return n, time.perf_counter() - t0


def single_throughput(
    family: TaskFamily, steps: int | None, seconds: float, seed: int, make: Callable[[int], gym.Env[Any, Any]] | None = None
) -> dict[str, float]:
    """Each task's single environment (``make(i)``, default ``family.make_env``) in turn, ``steps`` steps
    (or ``seconds / n``) each."""
    rng = np.random.default_rng(seed)
    make = make or family.make_env
    total_steps, total_wall, build = 0, 0.0, 0.0
    for i in range(family.n):
        t0 = time.perf_counter()
        env = make(i)
        env.reset(seed=seed + i)
        build += time.perf_counter() - t0

        def step(env: gym.Env[Any, Any] = env) -> None:
            _, _, terminated, truncated, _ = env.step(random_actions(family, rng, ())[()])
            if terminated or truncated:
                env.reset()

        n, wall = _run(step, steps, seconds / family.n)
        env.close()
        total_steps += n
        total_wall += wall
    return {"steps": total_steps, "wall": total_wall, "build": build, "sps": total_steps / total_wall}


def batched_throughput(family: TaskFamily, steps: int | None, seconds: float, seed: int) -> dict[str, float]:
    """``family.make_vec(range(n), 4)`` stepped with random actions; env-steps/s over all environments."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    venv = family.make_vec(range(family.n), ENVS_PER_TASK)
    venv.reset(seed)
    build = time.perf_counter() - t0
    n, wall = _run(lambda: venv.step(random_actions(family, rng, (venv.num_envs,))), steps, seconds)
    venv.close()
    return {"steps": n * venv.num_envs, "vector_steps": n, "wall": wall, "build": build, "sps": n * venv.num_envs / wall}


def highway_observation_comparison(
    family: TaskFamily, ours: dict[str, float], steps: int | None, seconds: float, seed: int
) -> list[str]:
    """highway-10's single environments with highway-env's own (pandas) ``Kinematics`` observation,
    against ours (same values, tested equal): the Markdown lines of the comparison."""
    from policygradex.tasks.highway import ENV_ID, env_config

    def make_reference(i: int) -> gym.Env[Any, Any]:
        env = gym.make(ENV_ID, config=env_config(family.tasks[i].params))
        return gym.wrappers.FlattenObservation(env)

    ref = single_throughput(family, steps, seconds, seed, make=make_reference)
    print(f"highway-10 with highway-env's observation: {ref['sps']:,.0f} env-steps/s", flush=True)
    return [
        "",
        "highway-10's single environments, same tasks, seeds and actions, in this run:",
        "",
        "| observation | env-steps/s | steps | wall (s) |",
        "|---|---:|---:|---:|",
        f"| highway-env's `KinematicObservation` (`gym.make({ENV_ID!r})`, pandas) | {ref['sps']:,.1f} | {ref['steps']:,} | {ref['wall']:.1f} |",
        f"| ours (`family.make_env`, NumPy, values tested equal) | {ours['sps']:,.1f} | {ours['steps']:,} | {ours['wall']:.1f} |",
        f"| ratio | {ours['sps'] / ref['sps']:.2f}× | | |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", nargs="+", default=list(DEFAULT_FAMILIES))
    ap.add_argument("--seconds", type=float, default=10.0, help="wall-clock per measurement")
    ap.add_argument("--steps", type=int, default=None, help="fixed step counts instead of --seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/envs.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    rows, notes, extra = [], [], []
    for name in args.families:
        try:
            family = tasks.make(name)
        except MissingExtraError as e:
            notes.append(f"- `{name}` skipped: {e}")
            continue
        # Build the batched form first: for Meta-World it builds (and caches) the benchmark object, whose
        # cost then shows in the batched construction column rather than in the single-env one.
        batched = batched_throughput(family, args.steps, args.seconds, args.seed)
        single = single_throughput(family, args.steps, args.seconds, args.seed)
        rows.append((family, single, batched))
        print(f"{name}: single {single['sps']:,.0f} env-steps/s, batched {batched['sps']:,.0f} env-steps/s", flush=True)
        if name == "highway-10":
            extra = highway_observation_comparison(family, single, args.steps, args.seconds, args.seed)

    budget = f"{args.steps} steps per task (single) / {args.steps} vector steps (batched)" if args.steps else (
        f"{args.seconds:g} s of stepping per measurement"
    )
    lines = [
        "# Environment throughput per family (random actions, no policy)",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_envs.py --seed {args.seed} "
        + (f"--steps {args.steps}" if args.steps else f"--seconds {args.seconds:g}") + "`.",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 torch thread, "
        f"Python {platform.python_version()}, torch {torch.__version__}, gymnasium {gym.__version__}.",
        f"Seeds: environments reset with seed {args.seed} (+ task index for single environments), "
        f"actions from `numpy.random.default_rng({args.seed})`. Budget: {budget}.",
        "",
        "Single: each task's `family.make_env(i)` stepped alone in turn, reset where an episode ends "
        "(steps and wall-clock summed over the tasks). Batched: `family.make_vec(range(n), 4)`, "
        f"{ENVS_PER_TASK} environments per task, same-step autoreset and one-hot ids included. "
        "Build: construction wall-clock (for Meta-World the batched build includes the benchmark object).",
        "",
        "| family | n | source | single env-steps/s | single steps | single wall (s) | batched env-steps/s "
        "| batched env-steps | batched wall (s) | build single / batched (s) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for family, s, b in rows:
        lines.append(
            f"| {family.name} | {family.n} | {family.source} | {s['sps']:,.0f} | {s['steps']:,} | {s['wall']:.1f} | "
            f"{b['sps']:,.0f} | {b['steps']:,} | {b['wall']:.1f} | {s['build']:.1f} / {b['build']:.1f} |"
        )
    if notes:
        lines += ["", *notes]
    lines += extra
    lines.append("")
    write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
