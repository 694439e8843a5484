"""PaCo: Parameter-Compositional multi-task RL (Sun, Zhang, Xu, Zhou, Wang 2022, "PaCo:
Parameter-Compositional Multi-Task Reinforcement Learning", NeurIPS; arXiv 2210.11653). Our
re-implementation, written from the paper and public re-implementations (the original lives in an ALF fork).

A shared *parameter set* Φ = [φ₁, …, φ_K] of K full parameter vectors of one MLP, and a learned
*compositional vector* w_τ ∈ R^K per task: task τ runs the MLP with θ_τ = Φ w_τ = Σ_k w_τ,k φ_k.
Because every layer is affine in its parameters, Σ_k w_k (W_k h + b_k) = (Σ_k w_k W_k) h + Σ_k w_k b_k,
so the network evaluates the K layers and mixes their outputs, which is exactly the MLP with θ_τ.
The MLP reads the state only; the task enters through w_τ alone. (PaCo's training tricks — masking the
loss of diverging tasks and resetting their w_τ — are not part of the network and are not implemented.)

Init: each φ_k as a PPO MLP (orthogonal), w_τ,k ~ N(0, 1/K), so θ_τ starts at the scale of one φ_k.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from policygradex.rl.networks.common import Activation, StackedLinear, activation_fn, split_task, stacked


class PacoNet(nn.Module):
    """PaCo network [..., obs_dim] → [..., out_dim].

    Args:
        obs_dim: observation size, the task id (its last ``task_dim`` entries) included.
        task_dim: length T of the one-hot task id.
        out_dim: output size.
        width: hidden width of the composed MLP.
        depth: its linear layers.
        sets: K, the size of the parameter set.
        activation: σ.
        out_gain: init gain of the output layer.
    """

    def __init__(
        self, obs_dim: int, task_dim: int, out_dim: int, width: int, depth: int, sets: int,
        activation: Activation, out_gain: float,
    ) -> None:
        super().__init__()
        self.task_dim = task_dim
        self.act = activation_fn(activation)
        self.composition: Tensor = nn.Parameter(torch.randn(task_dim, sets) / math.sqrt(sets))  # row τ: w_τ
        dims = [obs_dim - task_dim] + [width] * (depth - 1) + [out_dim]
        self.layers = nn.ModuleList([
            StackedLinear(sets, dims[j], dims[j + 1], gain=out_gain if j == depth - 1 else math.sqrt(2))
            for j in range(depth)
        ])

    def weights(self, obs: Tensor) -> Tensor:
        """w_τ of each sample's task. obs: [..., obs_dim] → [..., K]."""
        _, ctx = split_task(obs, self.task_dim)
        return ctx @ self.composition

    def task_parameters(self, w: Tensor) -> list[tuple[Tensor, Tensor]]:
        """θ = Φ w for one composition vector w [K]: (weight [in, out], bias [out]) per layer."""
        return [(torch.einsum("k,kio->io", w, lay.weight), w @ lay.bias) for lay in stacked(self.layers)]

    def forward(self, obs: Tensor) -> Tensor:
        state, _ = split_task(obs, self.task_dim)
        w = self.weights(obs)
        h = state
        for j, layer in enumerate(stacked(self.layers)):
            h = torch.einsum("...k,...ko->...o", w, layer.shared(h))
            if j < len(self.layers) - 1:
                h = self.act(h)
        return h
