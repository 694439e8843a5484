"""Per-task evaluation: mean return (and success rate) over a fixed number of episodes, batched, seeded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from policygradex.errors import ConfigError
from policygradex.rl.rollout import RolloutPolicy, RolloutState, step_env
from policygradex.tasks.base import TaskFamily
from policygradex.threads import library_threads

MAX_ENVS_PER_TASK = 16


@dataclass
class EvalResult:
    """Per-task evaluation results, keyed by family task index.

    Attributes:
        mean_return, std_return: over the episodes of each task.
        success_rate: fraction of episodes with ``success`` at any step (success-metric families), else None.
        episodes: episodes per task.
    """

    mean_return: dict[int, float]
    std_return: dict[int, float]
    success_rate: dict[int, float] | None
    episodes: int

    def score(self, metric: str) -> dict[int, float]:
        """The family's metric per task: success rate or mean return."""
        if metric == "success" and self.success_rate is not None:
            return self.success_rate
        return self.mean_return

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return {
            "mean_return": {str(k): v for k, v in self.mean_return.items()},
            "std_return": {str(k): v for k, v in self.std_return.items()},
            "success_rate": None if self.success_rate is None else {str(k): v for k, v in self.success_rate.items()},
            "episodes": self.episodes,
        }


@torch.no_grad()
@library_threads
def evaluate(
    policy: RolloutPolicy,
    family: TaskFamily,
    task_indices: Sequence[int],
    episodes: int,
    seed: int,
    deterministic: bool = True,
) -> EvalResult:
    """Run ``episodes`` episodes of every listed task and report per-task statistics.

    Each task gets ``min(episodes, 16)`` environments; environment j of a task counts exactly its first
    ``(episodes + j) // num_envs`` episodes, so the episode set does not favour short episodes.

    Args:
        policy: the policy to evaluate.
        family: the task family.
        task_indices: which tasks.
        episodes: episodes per task (≥ 1).
        seed: seeds the environments and, if sampling, the actions.
        deterministic: greedy/mean actions if True, sampled actions otherwise.

    Raises:
        ConfigError: ``episodes < 1`` or bad task indices.
    """
    if episodes < 1:
        raise ConfigError(f"episodes={episodes} must be at least 1")
    tasks = family.check_indices(task_indices)
    per_task = min(episodes, MAX_ENVS_PER_TASK)
    venv = family.make_vec(tasks, per_task)
    gen = torch.Generator().manual_seed(seed)
    bounds = None
    if not family.discrete:
        bounds = (np.asarray(family.action_space.low), np.asarray(family.action_space.high))  # type: ignore[attr-defined]
    slot = np.tile(np.arange(per_task), len(tasks))
    target = (episodes + slot) // per_task
    counted = np.zeros(venv.num_envs, dtype=np.int64)
    returns: dict[int, list[float]] = {i: [] for i in tasks}
    successes: dict[int, list[bool]] = {i: [] for i in tasks}
    try:
        state = RolloutState.start(venv, seed)
        while (counted < target).any():
            actions, _ = policy.act(torch.as_tensor(state.obs), gen, deterministic=deterministic)
            before = counted.copy()
            _, term, trunc, _, finished = step_env(venv, state, actions.numpy(), *(bounds or (None, None)))
            done_rows = np.nonzero(term | trunc)[0]
            for j, ep in zip(done_rows, finished, strict=True):
                if before[j] < target[j]:
                    returns[ep.task].append(ep.ret)
                    successes[ep.task].append(ep.success)
                counted[j] += 1
    finally:
        venv.close()
    return EvalResult(
        mean_return={i: float(np.mean(r)) for i, r in returns.items()},
        std_return={i: float(np.std(r)) for i, r in returns.items()},
        success_rate={i: float(np.mean(s)) for i, s in successes.items()} if family.metric == "success" else None,
        episodes=episodes,
    )
