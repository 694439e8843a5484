"""CARE: Contextual Attention-based REpresentation learning (Sodhani, Zhang, Pineau 2021, "Multi-Task
Reinforcement Learning with Context-based Representations", ICML; arXiv 2102.06177). Our
re-implementation, written from the paper and the authors' public ``mtrl`` code.

- Context: the original encodes each task's *language description* with a pretrained language model
  (RoBERTa) and passes it through a small MLP. Those embeddings cannot be downloaded here, so ours learns
  the task embedding instead: z = MLP(σ(E·onehot)) with a learned matrix E (one column per task) and a
  two-layer MLP (this is also what the Meta-World+ re-implementation does when no language model is used).
- Mixture of k state encoders: encoder_i(s), each a two-layer MLP; attention weights over them from the
  context, α = softmax(MLP(z)/τ) (τ = 1, soft attention); the state representation is Σ_i α_i encoder_i(s).
- The policy (or value) network reads [Σ_i α_i encoder_i(s), z]: an MLP of ``depth`` linear layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from policygradex.rl.networks.common import (
    Activation,
    StackedLinear,
    activation_fn,
    activation_module,
    layer_init,
    split_task,
    stacked,
)


class CareNet(nn.Module):
    """CARE network [..., obs_dim] → [..., out_dim].

    Args:
        obs_dim: observation size, the task id (its last ``task_dim`` entries) included.
        task_dim: length T of the one-hot task id.
        out_dim: output size.
        width: width of the context, the encoders and the main MLP.
        depth: linear layers of the main MLP.
        encoders: k, the number of state encoders.
        activation: σ.
        out_gain: init gain of the output layer.
        temperature: τ of the attention softmax.
    """

    def __init__(
        self, obs_dim: int, task_dim: int, out_dim: int, width: int, depth: int, encoders: int,
        activation: Activation, out_gain: float, temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.task_dim, self.temperature = task_dim, temperature
        self.act = activation_fn(activation)
        self.task_embedding = layer_init(nn.Linear(task_dim, width, bias=False))
        self.context = nn.Sequential(
            layer_init(nn.Linear(width, width)), activation_module(activation), layer_init(nn.Linear(width, width))
        )
        self.attention = nn.Sequential(
            layer_init(nn.Linear(width, width)), activation_module(activation),
            layer_init(nn.Linear(width, encoders), gain=0.01),  # attention starts close to uniform
        )
        self.encoders = nn.ModuleList([StackedLinear(encoders, obs_dim - task_dim, width), StackedLinear(encoders, width, width)])
        dims = [2 * width] + [width] * (depth - 1) + [out_dim]
        layers: list[nn.Module] = []
        for j in range(depth):
            last = j == depth - 1
            layers.append(layer_init(nn.Linear(dims[j], dims[j + 1]), gain=out_gain if last else 2**0.5))
            if not last:
                layers.append(activation_module(activation))
        self.main = nn.Sequential(*layers)

    def context_and_attention(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """The task context z [..., width] and the attention weights α [..., k] (sum to 1)."""
        _, ctx = split_task(obs, self.task_dim)
        z = self.context(self.act(self.task_embedding(ctx)))
        return z, torch.softmax(self.attention(z) / self.temperature, dim=-1)

    def forward(self, obs: Tensor) -> Tensor:
        state, _ = split_task(obs, self.task_dim)
        z, alpha = self.context_and_attention(obs)
        first, second = stacked(self.encoders)
        enc = second(self.act(first.shared(state)))  # [..., k, width]
        mixed = torch.einsum("...k,...kd->...d", alpha, enc)
        return self.main(torch.cat([mixed, z], dim=-1))
