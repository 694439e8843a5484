"""Generalised advantage estimation (Schulman et al. 2016)."""

from __future__ import annotations

import torch
from torch import Tensor


def gae(
    rewards: Tensor, values: Tensor, dones: Tensor, last_value: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """GAE(γ, λ) advantages and returns for a same-step-autoreset rollout.

    ``dones[t]`` marks that the episode ended at step t (terminated or truncated), so nothing flows
    from step t+1 back into step t. Truncated episodes are bootstrapped by the caller by adding
    γ·V(final observation) to their last reward (``rl.rollout.collect`` does).

    Args:
        rewards: [T, E] rewards r_t.
        values: [T, E] critic values V(s_t).
        dones: [T, E] 1.0 where the episode ended at step t.
        last_value: [E] V(s_T) of the observation after the last step.
        gamma: discount γ.
        lam: GAE λ.

    Returns:
        advantages [T, E] and returns [T, E] (= advantages + values).
    """
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(T)):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_adv = delta + gamma * lam * not_done * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values
