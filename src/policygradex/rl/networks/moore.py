"""MOORE: Mixture Of ORthogonal Experts (Hendawy, Peters, D'Eramo 2024, "Multi-Task Reinforcement
Learning with Mixture of Orthogonal Experts", ICLR; arXiv 2311.11385). Our re-implementation, written
from the paper and its public code.

- k experts, each an MLP of ``depth − 1`` linear layers from the state to a representation in R^width;
- the k representations of each sample are made orthonormal by Gram–Schmidt (the paper's orthogonal
  layer): U = GS([e₁(s), …, e_k(s)]) ∈ R^{k×width};
- task-specific weights c_τ = W_c · onehot (a linear map without bias, one column per task) mix them:
  f = tanh(c_τᵀ U);
- one output head per task (the multi-head output of MOORE's Meta-World setting) reads f.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from policygradex.rl.networks.common import (
    Activation,
    StackedLinear,
    activation_fn,
    gram_schmidt,
    split_task,
    stacked,
)


class MooreNet(nn.Module):
    """MOORE network [..., obs_dim] → [..., out_dim].

    Args:
        obs_dim: observation size, the task id (its last ``task_dim`` entries) included.
        task_dim: length T of the one-hot task id.
        out_dim: output size.
        width: size of each expert's representation (and hidden width); at least ``experts``.
        depth: linear layers from the state to the output (``depth − 1`` per expert, then the head).
        experts: k.
        activation: σ inside the experts.
        out_gain: init gain of the output heads.
    """

    def __init__(
        self, obs_dim: int, task_dim: int, out_dim: int, width: int, depth: int, experts: int,
        activation: Activation, out_gain: float,
    ) -> None:
        super().__init__()
        if experts > width:
            raise ValueError(f"MOORE needs width ≥ experts to orthogonalise {experts} representations, got width {width}")
        self.task_dim = task_dim
        self.act = activation_fn(activation)
        self.task_weights: Tensor = nn.Parameter(torch.randn(task_dim, experts) / math.sqrt(experts))  # row τ: c_τ
        dims = [obs_dim - task_dim] + [width] * (depth - 1)
        self.experts = nn.ModuleList([StackedLinear(experts, dims[j], dims[j + 1]) for j in range(depth - 1)])
        self.heads = StackedLinear(task_dim, width, out_dim, gain=out_gain)

    def representations(self, obs: Tensor) -> Tensor:
        """The orthonormalised expert representations U [..., k, width]."""
        state, _ = split_task(obs, self.task_dim)
        first, *rest = stacked(self.experts)
        h = first.shared(state)
        for layer in rest:
            h = layer(self.act(h))
        return gram_schmidt(h)

    def forward(self, obs: Tensor) -> Tensor:
        _, ctx = split_task(obs, self.task_dim)
        u = self.representations(obs)
        f = torch.tanh(torch.einsum("...k,...kd->...d", ctx @ self.task_weights, u))
        return torch.einsum("...t,...to->...o", ctx, self.heads.shared(f))
