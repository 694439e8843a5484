"""The one rollout loop: step a :class:`TaskVecEnv` with a policy, record transitions and episodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from policygradex.rl.gae import gae
from policygradex.tasks.base import TaskVecEnv


class RolloutPolicy(Protocol):
    """What a rollout needs of a policy: actions and V(s). :class:`~policygradex.rl.policy.ActorCritic`
    is one; ``rl.maml.TaskParamsPolicy`` (one parameter copy per task of the vector env) is another."""

    def act(self, obs: Tensor, generator: torch.Generator, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Actions [E] or [E, A] and their log-probabilities [E] for observations [E, obs_dim]."""
        ...

    def value(self, obs: Tensor) -> Tensor:
        """V(s) [E] for observations [E, obs_dim]."""
        ...


@dataclass
class Episode:
    """One finished episode."""

    task: int
    ret: float
    length: int
    success: bool


@dataclass
class RolloutState:
    """What persists between rollouts: the current observations and the running episode counters.

    Attributes:
        obs: [E, obs_dim] current observations.
        ep_return, ep_length, ep_success: [E] running per-environment episode statistics.
    """

    obs: np.ndarray
    ep_return: np.ndarray
    ep_length: np.ndarray
    ep_success: np.ndarray

    @classmethod
    def start(cls, venv: TaskVecEnv, seed: int) -> RolloutState:
        """Reset ``venv`` with ``seed`` and start counting."""
        obs = venv.reset(seed)
        e = venv.num_envs
        return cls(obs, np.zeros(e), np.zeros(e, dtype=np.int64), np.zeros(e, dtype=bool))


@dataclass
class Batch:
    """A rollout of T steps from E environments, flattened to N = T·E rows in time-major order.

    Attributes:
        obs: [N, obs_dim]; actions: [N] or [N, A]; logp: [N] log π(a|s) at collection time;
        values: [N]; advantages: [N] GAE; returns: [N]; task: [N] family index of each row.
    """

    obs: Tensor
    actions: Tensor
    logp: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor
    task: Tensor
    episodes: list[Episode] = field(default_factory=list)


def step_env(
    venv: TaskVecEnv, state: RolloutState, actions: np.ndarray, action_low: np.ndarray | None,
    action_high: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Episode]]:
    """Step ``venv`` once, update ``state`` in place and return what the step produced.

    Continuous actions are clipped to the action space for the environment only (the policy's
    unclipped sample is what is stored and scored).

    Returns:
        reward [E], terminated [E], truncated [E], final_obs [E, obs_dim], finished episodes.
    """
    env_actions = actions if action_low is None else np.clip(actions, action_low, action_high)
    res = venv.step(env_actions)
    state.ep_return += res.reward
    state.ep_length += 1
    if res.success is not None:
        state.ep_success |= res.success
    done = res.terminated | res.truncated
    episodes = []
    for j in np.nonzero(done)[0]:
        episodes.append(
            Episode(int(venv.task_index[j]), float(state.ep_return[j]), int(state.ep_length[j]), bool(state.ep_success[j]))
        )
        state.ep_return[j] = 0.0
        state.ep_length[j] = 0
        state.ep_success[j] = False
    state.obs = res.obs
    return res.reward, res.terminated, res.truncated, res.final_obs, episodes


@torch.no_grad()
def collect(
    policy: RolloutPolicy,
    venv: TaskVecEnv,
    state: RolloutState,
    num_steps: int,
    gamma: float,
    lam: float,
    generator: torch.Generator,
    action_bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> Batch:
    """Collect ``num_steps`` steps from every environment and compute GAE with the policy's critic.

    Truncated (time-limit) episodes are bootstrapped: γ·V(final observation) is added to the last
    reward, so the time limit is not mistaken for a terminal state.

    Args:
        policy: acts and supplies V.
        venv: the environments (state continues across calls).
        state: the rollout state, updated in place.
        num_steps: T.
        gamma, lam: discount and GAE λ.
        generator: the action-sampling stream.
        action_bounds: (low, high) to clip continuous actions to, or None.

    Returns:
        The flattened batch (N = T·E rows).
    """
    obs_buf, act_buf, logp_buf, val_buf, rew_buf, done_buf = [], [], [], [], [], []
    episodes: list[Episode] = []
    low, high = action_bounds if action_bounds is not None else (None, None)
    for _ in range(num_steps):
        obs_t = torch.as_tensor(state.obs)
        actions, logp = policy.act(obs_t, generator)
        value = policy.value(obs_t)
        reward, terminated, truncated, final_obs, eps = step_env(venv, state, actions.numpy(), low, high)
        reward_t = torch.as_tensor(reward, dtype=torch.float32)
        cut = truncated & ~terminated
        if cut.any():
            rows = np.nonzero(cut)[0]
            reward_t[rows] += gamma * policy.value(torch.as_tensor(final_obs[rows]))
        obs_buf.append(obs_t)
        act_buf.append(actions)
        logp_buf.append(logp)
        val_buf.append(value)
        rew_buf.append(reward_t)
        done_buf.append(torch.as_tensor(terminated | truncated, dtype=torch.float32))
        episodes.extend(eps)
    last_value = policy.value(torch.as_tensor(state.obs))
    values = torch.stack(val_buf)
    adv, ret = gae(torch.stack(rew_buf), values, torch.stack(done_buf), last_value, gamma, lam)
    task = torch.as_tensor(venv.task_index).repeat(num_steps)
    return Batch(
        obs=torch.cat(obs_buf),
        actions=torch.cat(act_buf),
        logp=torch.cat(logp_buf),
        values=values.reshape(-1),
        advantages=adv.reshape(-1),
        returns=ret.reshape(-1),
        task=task,
        episodes=episodes,
    )
