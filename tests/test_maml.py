"""MAML (issue 13, item 1): meta-gradients against reference computations, batching, resume, inputs."""

import json

import numpy as np
import pytest
import torch
from torch.func import functional_call

from policygradex import tasks
from policygradex.errors import ConfigError
from policygradex.gradex.features import flatten, unflatten
from policygradex.rl.evaluate import evaluate
from policygradex.rl.maml import (
    MAMLConfig,
    MAMLState,
    TaskBatch,
    TaskParamsPolicy,
    adapt,
    meta_loss,
    meta_train,
    stack,
    task_batch,
)
from policygradex.rl.policy import PolicyConfig, build_policy, log_prob
from policygradex.rl.rollout import Batch

K, N, OBS, ACTIONS = 3, 7, 3, 2
ALPHA, CLIP = 0.3, 0.2


def _tiny(dtype=torch.float64, discrete=True):
    pol = build_policy(OBS, ACTIONS, discrete, PolicyConfig(depth=2, width=5), seed=0).to(dtype)
    return pol


def _data(seed, discrete=True, logp_from=None):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(K, N, OBS, generator=g, dtype=torch.float64)
    if discrete:
        actions = torch.randint(0, ACTIONS, (K, N), generator=g)
    else:
        actions = torch.randn(K, N, ACTIONS, generator=g, dtype=torch.float64)
    adv = torch.randn(K, N, generator=g, dtype=torch.float64)
    logp = torch.zeros(K, N, dtype=torch.float64) if logp_from is None else logp_from
    z = torch.zeros(K, N, dtype=torch.float64)
    return TaskBatch(obs=obs, actions=actions, logp=logp, values=z, returns=z, advantages=adv)


def _fixed_batches(pol, inner_steps, discrete=True):
    """Inner rollouts and an outer rollout whose old log-probs lie near (not at) those of φ(θ): ratios
    inside the clip range and away from its kinks."""
    inner = [_data(10 + j, discrete) for j in range(inner_steps)]
    outer = _data(99, discrete)
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in pol.actor.named_parameters()}
    phi = _reference_adapt(pol, theta, inner, create_graph=False)
    logp = torch.stack([log_prob(pol.actor, {k: v[i] for k, v in phi.items()}, outer.obs[i], outer.actions[i])
                        for i in range(K)]).detach()
    noise = 0.05 * torch.randn(K, N, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    outer.logp = logp + noise
    return inner, outer


def _reference_adapt(pol, theta, inner, create_graph):
    """φ_K^i by a Python loop over tasks with torch.autograd.grad (create_graph for second order)."""
    per_task = []
    for i in range(K):
        phi = dict(theta)
        for data in inner:
            loss = -(log_prob(pol.actor, phi, data.obs[i], data.actions[i]) * data.advantages[i]).mean()
            grads = torch.autograd.grad(loss, list(phi.values()), create_graph=create_graph)
            phi = {k: p - ALPHA * (g if create_graph else g.detach()) for (k, p), g in zip(phi.items(), grads, strict=True)}
        per_task.append(phi)
    return {k: torch.stack([p[k] for p in per_task]) for k in theta}


def _reference_loss(pol, theta, inner, outer, create_graph):
    phi = _reference_adapt(pol, theta, inner, create_graph)
    ratio_terms = []
    for i in range(K):
        logp = log_prob(pol.actor, {k: v[i] for k, v in phi.items()}, outer.obs[i], outer.actions[i])
        ratio = (logp - outer.logp[i]).exp()
        adv = outer.advantages[i]
        ratio_terms.append(torch.max(-adv * ratio, -adv * ratio.clamp(1 - CLIP, 1 + CLIP)))
    return torch.cat(ratio_terms).mean()


def _meta_grad(pol, inner, outer, first_order):
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in pol.actor.named_parameters()}
    loss, _ = meta_loss(pol.actor, theta, inner, outer, ALPHA, first_order, CLIP)
    grads = torch.autograd.grad(loss, list(theta.values()))
    return loss.detach(), flatten(dict(zip(theta, grads, strict=True)))


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_second_order_meta_gradient_matches_autograd_create_graph(discrete, inner_steps):
    pol = _tiny(discrete=discrete)
    inner, outer = _fixed_batches(pol, inner_steps, discrete)
    loss, g = _meta_grad(pol, inner, outer, first_order=False)
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in pol.actor.named_parameters()}
    ref_loss = _reference_loss(pol, theta, inner, outer, create_graph=True)
    ref = flatten(dict(zip(theta, torch.autograd.grad(ref_loss, list(theta.values())), strict=True)))
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-12)
    torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_second_order_meta_gradient_matches_finite_differences(inner_steps):
    pol = _tiny()
    inner, outer = _fixed_batches(pol, inner_steps)
    _, g = _meta_grad(pol, inner, outer, first_order=False)
    theta0 = flatten({k: v.detach() for k, v in pol.actor.named_parameters()})
    like = {k: v.detach() for k, v in pol.actor.named_parameters()}

    def f(vec):
        with torch.enable_grad():
            return meta_loss(pol.actor, unflatten(vec, like), inner, outer, ALPHA, False, CLIP)[0].item()

    rng = torch.Generator().manual_seed(3)
    eps = 1e-5
    for _ in range(4):
        v = torch.randn(theta0.shape, generator=rng, dtype=torch.float64)
        fd = (f(theta0 + eps * v) - f(theta0 - eps * v)) / (2 * eps)
        assert fd == pytest.approx(float(g @ v), rel=1e-6, abs=1e-9)


def test_first_order_is_second_order_without_the_hessian_term():
    """One inner step: dφ_i/dθ = I − α H_i, so SO = Σ_i (I − α H_i) ∇L_out,i(φ_i) and FO = Σ_i ∇L_out,i(φ_i)."""
    pol = _tiny()
    inner, outer = _fixed_batches(pol, 1)
    _, fo = _meta_grad(pol, inner, outer, first_order=True)
    _, so = _meta_grad(pol, inner, outer, first_order=False)
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in pol.actor.named_parameters()}
    phi = {k: v.detach() for k, v in _reference_adapt(pol, theta, inner, create_graph=False).items()}
    theta = {k: v.detach() for k, v in theta.items()}
    # ∇ of the outer loss with respect to each task's adapted parameters (the loss is a mean over K·N rows)
    leaves = [{k: v[i].clone().requires_grad_(True) for k, v in phi.items()} for i in range(K)]
    rows = []
    for i in range(K):
        logp = log_prob(pol.actor, leaves[i], outer.obs[i], outer.actions[i])
        ratio = (logp - outer.logp[i]).exp()
        adv = outer.advantages[i]
        rows.append(torch.max(-adv * ratio, -adv * ratio.clamp(1 - CLIP, 1 + CLIP)))
    loss = torch.cat(rows).mean()
    outer_grads = [flatten(dict(zip(leaves[i], torch.autograd.grad(loss, list(leaves[i].values()), retain_graph=True), strict=True)))
                   for i in range(K)]
    torch.testing.assert_close(fo, sum(outer_grads), rtol=1e-10, atol=1e-12)
    # the Hessian term: −α Σ_i H_i ∇L_out,i, with H_i the exact Hessian of task i's inner loss at θ
    theta_vec = flatten(theta)

    def inner_loss_i(vec, i):
        return -(log_prob(pol.actor, unflatten(vec, theta), inner[0].obs[i], inner[0].actions[i]) * inner[0].advantages[i]).mean()

    hess_term = sum(torch.autograd.functional.hessian(lambda v, i=i: inner_loss_i(v, i), theta_vec) @ outer_grads[i]
                    for i in range(K))
    assert float(hess_term.norm()) > 1e-4 * float(fo.norm())  # the two orders differ here
    torch.testing.assert_close(so, fo - ALPHA * hess_term, rtol=1e-9, atol=1e-11)


def test_task_batch_regroups_time_major_rows_by_task():
    T, k, e = 3, 2, 2  # E = 4 environments: tasks 5, 5, 8, 8
    E = k * e
    t_idx = torch.arange(T).repeat_interleave(E)
    env = torch.arange(E).repeat(T)
    code = (100 * t_idx + env).double()  # row t·E + j holds 100 t + j
    batch = Batch(obs=code[:, None], actions=code.long(), logp=code, values=code, advantages=code, returns=code,
                  task=torch.tensor([5, 5, 8, 8]).repeat(T))
    tb = task_batch(batch, k, E)
    assert tb.obs.shape == (k, T * e, 1)
    assert tb.values[0].tolist() == [0, 1, 100, 101, 200, 201]
    assert tb.values[1].tolist() == [2, 3, 102, 103, 202, 203]
    adv = tb.advantages
    assert torch.allclose(adv.mean(1), torch.zeros(k, dtype=adv.dtype), atol=1e-12)
    assert torch.allclose(adv.std(1), torch.ones(k, dtype=adv.dtype))


def test_task_params_policy_with_theta_everywhere_acts_like_the_policy():
    family = tasks.make("cartpole-meta-10")
    pol = build_policy(family.obs_dim, 2, True, PolicyConfig(), seed=3)
    obs = torch.randn(12, family.obs_dim, generator=torch.Generator().manual_seed(0))
    a, lp = pol.act(obs, torch.Generator().manual_seed(1))
    b, lq = TaskParamsPolicy(pol, stack(pol.actor_params(), 3)).act(obs, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    torch.testing.assert_close(lp, lq)
    # different parameters per task block: block i acts with φ^i
    phi = stack(pol.actor_params(), 3)
    phi = {k: v.clone() for k, v in phi.items()}
    last = [name for name in phi if name.endswith("bias")][-1]  # the logits' bias
    phi[last][1] += torch.tensor([50.0, -50.0])  # task 1 always picks action 0
    phi[last][2] += torch.tensor([-50.0, 50.0])  # task 2 always picks action 1
    c, _ = TaskParamsPolicy(pol, phi).act(obs, torch.Generator().manual_seed(1))
    assert torch.equal(c[:4], a[:4]) and (c[4:8] == 0).all() and (c[8:] == 1).all()


def test_gaussian_task_params_policy_uses_each_tasks_log_std():
    pol = build_policy(4, 2, False, PolicyConfig(depth=2, width=8), seed=0)
    phi = {k: v.clone() for k, v in stack(pol.actor_params(), 2).items()}
    phi["log_std"][1] = torch.tensor([-8.0, -8.0])  # task 1: nearly deterministic (std 3e-4)
    obs = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    actions, logp = TaskParamsPolicy(pol, phi).act(obs, torch.Generator().manual_seed(0))
    means = functional_call(pol.actor, {k: v[1] for k, v in phi.items()}, (obs[3:],))
    torch.testing.assert_close(actions[3:], means, atol=3e-3, rtol=0)
    assert (actions[:3] - functional_call(pol.actor, pol.actor_params(), (obs[:3],))).abs().max() > 0.05
    ref = torch.cat([log_prob(pol.actor, {k: v[i] for k, v in phi.items()}, obs[3 * i:3 * i + 3], actions[3 * i:3 * i + 3])
                     for i in range(2)])
    torch.testing.assert_close(logp, ref, rtol=1e-4, atol=1e-4)


SMALL = MAMLConfig(total_steps=2 * 2 * 2 * 16 * 3, envs_per_task=2, rollout_steps=16, outer_epochs=2, seed=4)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    family = tasks.make("cartpole-meta-10")
    init = build_policy(family.obs_dim, 2, True, PolicyConfig(depth=2, width=16), seed=1)
    full = meta_train(family, [1, 4], SMALL, init=init)
    assert len(full.history) == 3 and full.env_steps == SMALL.total_steps
    states = []
    meta_train(family, [1, 4], SMALL, init=init, on_state=states.append, state_every_s=0)
    assert [s.iteration for s in states] == [1, 2]
    path = tmp_path / "state.pt"
    torch.save(states[0].to_dict(), path)  # checkpoints are data
    loaded = MAMLState.from_dict(torch.load(path, weights_only=True))
    resumed = meta_train(family, [1, 4], SMALL, init=init, resume=loaded)
    for (k, a), b in zip(full.policy.state_dict().items(), resumed.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert json.dumps(resumed.history) == json.dumps(full.history)  # (NaN where no episode ended)
    assert not torch.equal(full.policy.actor.net[0].weight, init.actor.net[0].weight)  # it did train


def test_meta_batch_samples_tasks_and_keeps_the_budget():
    family = tasks.make("cartpole-meta-10")
    cfg = MAMLConfig(total_steps=2 * 2 * 2 * 16 * 2, envs_per_task=2, rollout_steps=16, outer_epochs=1, meta_batch=2)
    assert cfg.steps_per_iteration(5) == 2 * 2 * 2 * 16 and cfg.num_iterations(5) == 2
    res = meta_train(family, [0, 1, 2, 3, 4], cfg, policy_cfg=PolicyConfig(depth=2, width=8))
    assert res.env_steps == cfg.total_steps


@pytest.mark.parametrize("kwargs, needle", [
    ({"inner_lr": 0.0}, "maml.inner_lr=0.0"),
    ({"outer_lr": float("inf")}, "maml.outer_lr=inf"),
    ({"inner_steps": 0}, "maml.inner_steps=0"),
    ({"rollout_steps": -1}, "maml.rollout_steps=-1"),
    ({"meta_batch": 0}, "maml.meta_batch=0"),
    ({"gamma": 1.5}, "maml.gamma=1.5"),
    ({"seed": -2}, "maml.seed=-2"),
    ({"outer_epochs": 1.5}, "maml.outer_epochs=1.5"),
])
def test_bad_config_is_one_clear_sentence(kwargs, needle):
    with pytest.raises(ConfigError) as e:
        MAMLConfig(**kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_inputs_are_refused_before_any_work():
    family = tasks.make("cartpole-meta-10")
    pol = build_policy(family.obs_dim, 2, True, PolicyConfig(depth=2, width=8), seed=0)
    with pytest.raises(ConfigError, match="less than one meta-iteration"):
        meta_train(family, [0, 1], MAMLConfig(total_steps=10), init=pol)
    with pytest.raises(ConfigError, match="out of range"):
        meta_train(family, [0, 12], SMALL, init=pol)
    other = build_policy(7, 2, True, PolicyConfig(depth=2, width=8), seed=0)
    with pytest.raises(ConfigError, match="does not fit family"):
        meta_train(family, [0, 1], SMALL, init=other)
    with pytest.raises(ConfigError, match="steps=-1"):
        adapt(pol, family, [0], -1, SMALL, seed=0)
    with pytest.raises(ConfigError, match="lr=0"):
        adapt(pol, family, [0], 1, SMALL, seed=0, lr=0.0)


def test_adaptation_improves_held_out_cartpole_tasks():
    """A fixed, untrained policy adapted with 10 inner-loop updates beats itself unadapted on held-out
    tasks of cartpole-meta-10-test (fixed seeds; measured 10/13/34/88/8 → 156/68/121/324/100)."""
    test = tasks.make("cartpole-meta-10-test")
    pol = build_policy(test.obs_dim, 2, True, PolicyConfig(), seed=0)
    cfg = MAMLConfig(inner_lr=0.2, envs_per_task=4, rollout_steps=128)
    held_out = [0, 1, 2, 3, 4]
    before = evaluate(TaskParamsPolicy(pol, adapt(pol, test, held_out, 0, cfg, seed=1)), test, held_out, 8, seed=2)
    phi = adapt(pol, test, held_out, 10, cfg, seed=1)
    after = evaluate(TaskParamsPolicy(pol, phi), test, held_out, 8, seed=2)
    gains = np.array([after.mean_return[i] - before.mean_return[i] for i in held_out])
    assert (gains > 0).all() and gains.mean() > 50
    # the same adaptation again gives the same parameters (seeded)
    again = adapt(pol, test, held_out, 10, cfg, seed=1)
    assert all(torch.equal(phi[k], again[k]) for k in phi)


@pytest.mark.parametrize("discrete", [True, False])
def test_mlp_fast_path_equals_vmap_over_functional_call(discrete):
    from torch.func import vmap

    from policygradex.rl.maml import stacked_forward

    pol = build_policy(6, 3, discrete, PolicyConfig(depth=3, width=8, activation="relu"), seed=0)
    g = torch.Generator().manual_seed(0)
    phi = {k: v + 0.1 * torch.randn(4, *v.shape, generator=g) for k, v in pol.actor_params().items()}
    obs = torch.randn(4, 5, 6, generator=g)
    ref = vmap(lambda p, o: functional_call(pol.actor, p, (o,)))(phi, obs)
    torch.testing.assert_close(stacked_forward(pol.actor, phi, obs), ref, rtol=1e-5, atol=1e-6)


def test_second_order_training_runs_and_differs_from_first_order():
    from dataclasses import replace

    family = tasks.make("cartpole-meta-10")
    init = build_policy(family.obs_dim, 2, True, PolicyConfig(depth=2, width=16), seed=1)
    cfg = replace(SMALL, total_steps=2 * 2 * 2 * 16, inner_lr=0.5)
    fo = meta_train(family, [1, 4], cfg, init=init)
    so = meta_train(family, [1, 4], replace(cfg, first_order=False), init=init)
    w_fo, w_so, w0 = fo.policy.actor.net[0].weight, so.policy.actor.net[0].weight, init.actor.net[0].weight
    assert torch.isfinite(w_so).all() and not torch.equal(w_so, w0)
    assert not torch.equal(w_fo, w_so)  # the same data, a different (Hessian-corrected) meta-gradient


@pytest.mark.parametrize("arch", ["sm", "paco"])
def test_maml_and_adaptation_run_with_a_multitask_architecture(arch):
    """MAML builds a new multitask-architecture policy with the family's task id size, and adaptation's
    per-task copies act through the generic vmap path: each task's output is its own parameters' output."""
    from policygradex.rl.maml import stacked_forward

    family, test = tasks.make("cartpole-meta-10"), tasks.make("cartpole-meta-10-test")
    cfg = MAMLConfig(total_steps=2 * 2 * 4 * 16, rollout_steps=16, seed=0)
    res = meta_train(family, [0, 1], cfg, policy_cfg=PolicyConfig(arch=arch, width=16))
    assert res.policy.cfg.arch == arch
    phi = adapt(res.policy, test, [0, 1, 2], 1, cfg, seed=0)
    theta = res.policy.actor_params()
    assert set(phi) == set(theta) and all(phi[k].shape == (3, *theta[k].shape) for k in theta)
    assert any(not torch.equal(phi[k][0], theta[k]) for k in theta)  # adaptation moved task 0's copy
    obs = torch.randn(3, 5, family.obs_dim, generator=torch.Generator().manual_seed(0))
    out = stacked_forward(res.policy.actor, phi, obs)
    for i in range(3):
        own = functional_call(res.policy.actor, {k: v[i] for k, v in phi.items()}, (obs[i],))
        torch.testing.assert_close(out[i], own, rtol=1e-5, atol=1e-6)
