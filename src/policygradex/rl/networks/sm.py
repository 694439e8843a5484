"""Soft Modularization (Yang, Xu, Wu, Wang 2020, "Multi-Task Reinforcement Learning with Soft
Modularization", NeurIPS; arXiv 2003.13661). Our re-implementation, written from the paper and the
authors' public ``ModularGatedCascadeCondNet``.

A *base network* of L layers with m modules each, and a *routing network* that, per sample, outputs
soft connection probabilities between the modules of consecutive layers:

- state embedding f(s) (two linear layers, no final activation) and task embedding h(z) (one linear layer
  on the one-hot id), combined by the elementwise product e = f(s) ⊙ h(z) (paper §4.2: the routing is
  conditioned on both the task and the state);
- a routing trunk g = W₂ σ(W₁ σ(e)) (two layers);
- p¹ = softmax_rows(W_d¹ σ(g)) ∈ R^{m×m}; for the later layers, as the authors' code does, each routing
  sees all earlier ones: p^{l+1} = softmax_rows(W_d^{l+1} σ((W_u^{l+1} [p¹, …, p^l]) ⊙ g));
  the outputs of the last module layer are combined with weights w = softmax(W_d σ((W_u [p¹, …, p^{L−1}]) ⊙ g));
- base network: y⁰_j = module⁰_j(σ(f(s))); y^{l+1}_j = module^{l+1}_j(σ(Σ_i p^{l+1}_{j,i} y^l_i));
  output = head(σ(Σ_j w_j y^{L−1}_j)).

The modules never see the task id: a task changes the output only through the routing.
Softmax rows: for each receiving module j, the probabilities over sending modules i sum to 1.
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

ROUTE_GAIN = 0.01
"""Init gain of the layers that output routing logits: routing starts close to uniform (the authors'
code initialises them with a small uniform range)."""


class SoftModularNet(nn.Module):
    """Soft Modularization network [..., obs_dim] → [..., out_dim].

    Args:
        obs_dim: observation size, the task id (its last ``task_dim`` entries) included.
        task_dim: length T of the one-hot task id.
        out_dim: output size.
        width: D, the width of the embeddings, the routing trunk and every module.
        layers: L ≥ 2, layers of modules in the base network.
        modules: m, modules per layer.
        activation: σ.
        out_gain: init gain of the output layer.
    """

    def __init__(
        self, obs_dim: int, task_dim: int, out_dim: int, width: int, layers: int, modules: int,
        activation: Activation, out_gain: float,
    ) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"Soft Modularization needs at least 2 layers of modules, got {layers}")
        self.task_dim, self.num_layers, self.num_modules = task_dim, layers, modules
        self.act = activation_fn(activation)
        m2 = modules * modules
        self.state_embedding = nn.Sequential(
            layer_init(nn.Linear(obs_dim - task_dim, width)), activation_module(activation),
            layer_init(nn.Linear(width, width)),
        )
        self.task_embedding = layer_init(nn.Linear(task_dim, width, bias=False))
        self.routing_trunk = nn.ModuleList([layer_init(nn.Linear(width, width)), layer_init(nn.Linear(width, width))])
        self.route_first = layer_init(nn.Linear(width, m2), gain=ROUTE_GAIN)
        # Routing l+1 (l = 1..L-2) conditions on p¹..p^l; the final weights on p¹..p^{L−1}.
        self.route_cond = nn.ModuleList([layer_init(nn.Linear(l * m2, width)) for l in range(1, layers - 1)])
        self.route_out = nn.ModuleList([layer_init(nn.Linear(width, m2), gain=ROUTE_GAIN) for _ in range(1, layers - 1)])
        self.final_cond = layer_init(nn.Linear((layers - 1) * m2, width))
        self.final_out = layer_init(nn.Linear(width, modules), gain=ROUTE_GAIN)
        self.module_layers = nn.ModuleList([StackedLinear(modules, width, width) for _ in range(layers)])
        self.head = layer_init(nn.Linear(width, out_dim), gain=out_gain)

    def routing(self, obs: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """The routing of each sample.

        Args:
            obs: [..., obs_dim].

        Returns:
            the L−1 routing matrices p^l [..., m, m] (rows sum to 1), the output weights w [..., m]
            (sum to 1), and σ(f(s)) [..., D], the input of the first module layer.
        """
        state, ctx = split_task(obs, self.task_dim)
        f = self.state_embedding(state)
        g = self.act(f * self.task_embedding(ctx))
        g = self.routing_trunk[1](self.act(self.routing_trunk[0](g)))
        m = self.num_modules
        probs = [torch.softmax(self.route_first(self.act(g)).unflatten(-1, (m, m)), dim=-1)]
        for cond, out in zip(self.route_cond, self.route_out, strict=True):
            c = self.act(cond(torch.cat([p.flatten(-2) for p in probs], dim=-1)) * g)
            probs.append(torch.softmax(out(c).unflatten(-1, (m, m)), dim=-1))
        c = self.act(self.final_cond(torch.cat([p.flatten(-2) for p in probs], dim=-1)) * g)
        return probs, torch.softmax(self.final_out(c), dim=-1), self.act(f)

    def forward(self, obs: Tensor) -> Tensor:
        probs, weights, h = self.routing(obs)
        first, *rest = stacked(self.module_layers)
        y = first.shared(h)  # [..., m, D]
        for p, layer in zip(probs, rest, strict=True):
            y = layer(self.act(torch.einsum("...ji,...id->...jd", p, y)))
        return self.head(self.act(torch.einsum("...j,...jd->...d", weights, y)))
