"""Observation normalisation (issue 14, item 2): running statistics as buffers of the policy, updated by
PPO's rollouts only, invisible to θ, seen by every functional use of the actor, saved in checkpoints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad, vmap

from policygradex import tasks
from policygradex.config import MetaConfig, ResolvedRun, RunConfig, from_data, resolve, to_data
from policygradex.errors import ConfigError
from policygradex.gradex.features import collect_features, layer_factors, per_sample_grads
from policygradex.gradex.projection import GaussianProjection, kronecker_blocks
from policygradex.rl.checkpoint import load_checkpoint, save_checkpoint
from policygradex.rl.evaluate import evaluate
from policygradex.rl.networks import ARCHS
from policygradex.rl.obs_norm import RunningObsNorm, merge_moments
from policygradex.rl.policy import PolicyConfig, build_policy, log_prob, policy_config_for
from policygradex.rl.ppo import PPOConfig, TrainState, train, update_obs_norm
from policygradex.rl.rollout import RolloutState, collect

# cartpole-10: 4 state numbers + a 10-long task id; 2 iterations of 3 tasks × 2 envs × 16 steps
SMALL = PPOConfig(total_steps=3 * 2 * 16 * 2, envs_per_task=2, num_steps=16, num_minibatches=2, update_epochs=2)


class BatchRecorder:
    """An UpdateObserver that keeps every rollout's observations (it changes nothing)."""

    def __init__(self) -> None:
        self.obs: list[torch.Tensor] = []

    def observe(self, iteration, policy, batch, lr) -> None:
        self.obs.append(batch.obs.clone())

    def state_dict(self):
        return {"obs": list(self.obs)}

    def load_state_dict(self, state) -> None:
        self.obs = list(state["obs"])


def _stats(policy) -> dict[str, torch.Tensor]:
    norm = policy.actor.obs_norm
    return {"mean": norm.mean.clone(), "var": norm.var.clone(), "count": norm.count.clone()}


def _fitted_policy(discrete: bool, arch: str = "mlp", obs_dim: int = 9, task_dim: int = 3, seed: int = 0):
    """A policy with obs_norm whose statistics are far from the identity (state scales 0.1 … 50)."""
    pol = build_policy(obs_dim, 3, discrete, PolicyConfig(depth=4, width=8, arch=arch, obs_norm=True),  # type: ignore[arg-type]
                       seed=seed, task_dim=task_dim)
    g = torch.Generator().manual_seed(seed + 1)
    s = obs_dim - task_dim
    scale = torch.logspace(-1, np.log10(50), s)
    pol.update_obs_norm(torch.cat([3.0 + scale * torch.randn(200, s, generator=g), torch.zeros(200, task_dim)], 1))
    ids = torch.eye(task_dim)[torch.randint(0, task_dim, (13,), generator=g)]
    obs = torch.cat([3.0 + scale * torch.randn(13, s, generator=g), ids], 1)
    actions = torch.randint(0, 3, (13,), generator=g) if discrete else torch.randn(13, 3, generator=g)
    return pol, obs, actions


# ---- the statistics and the normalisation --------------------------------------------------------------
def test_merged_moments_equal_numpy_over_all_rows_in_any_split():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, (101, 4)) * np.array([1.0, 10.0, 0.01, 100.0])
    mean, var, count = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for part in np.split(x, [1, 30, 31, 77]):  # uneven parts, one of a single row
        t = torch.as_tensor(part)
        mean, var, count = merge_moments(mean, var, count, t.mean(0), t.var(0, unbiased=False), float(len(part)))
    np.testing.assert_allclose(mean.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var.numpy(), x.var(0), rtol=1e-10)
    assert float(count) == 101


def test_normalisation_is_clipped_standardisation_of_the_state_and_leaves_the_task_id():
    norm = RunningObsNorm(3)
    x = torch.tensor([[1.0, 100.0, 5.0, 1.0, 0.0], [3.0, 300.0, 5.0, 0.0, 1.0], [2.0, 200.0, 5.0, 0.0, 0.0]])
    torch.testing.assert_close(norm(x), torch.cat([x[:, :3].clamp(-10, 10), x[:, 3:]], 1))  # before any update: identity, clipped
    norm.update(x)
    mean, var = x[:, :3].double().mean(0), x[:, :3].double().var(0, unbiased=False)
    query = torch.tensor([[2.0, 100.0, 5.0, 0.0, 1.0], [2.0, 1e6, 7.0, 1.0, 0.0]])
    expected = ((query[:, :3].double() - mean) / torch.sqrt(var + 1e-8)).clamp(-10, 10)
    out = norm(query)
    torch.testing.assert_close(out[:, :3], expected.float())
    assert out[1, 1] == 10.0 and out[1, 2] == 10.0  # far outliers (and a constant column's change) are clipped
    assert torch.equal(out[:, 3:], query[:, 3:])  # the one-hot task id is not normalised
    assert out.dtype == torch.float32 and norm(query.double()).dtype == torch.float64


def test_statistics_are_buffers_so_theta_is_unchanged():
    plain = build_policy(14, 2, True, PolicyConfig(), seed=0, task_dim=10)
    normed = build_policy(14, 2, True, PolicyConfig(obs_norm=True), seed=0, task_dim=10)
    assert list(plain.actor_params()) == list(normed.actor_params())  # θ: the same names, order, values
    assert all(torch.equal(a, b) for a, b in zip(plain.actor_params().values(), normed.actor_params().values(), strict=True))
    assert [n for n, _ in normed.named_buffers()] == ["actor.obs_norm.mean", "actor.obs_norm.var", "actor.obs_norm.count"]
    assert normed.actor.obs_norm.state_dim == 4 and plain.actor.obs_norm is None
    assert [b.name for b in kronecker_blocks(normed.actor)] == [b.name for b in kronecker_blocks(plain.actor)]


# ---- PPO's rollouts update the statistics, nothing else does --------------------------------------------
def test_statistics_after_training_are_numpy_mean_and_var_of_every_rollout():
    """Known answer: after train, the buffers are the population mean/variance of the state part of every
    observation the rollouts collected (2 iterations × 96 rows), and the task-id columns are untouched."""
    family = tasks.make("cartpole-10")
    seen = BatchRecorder()
    res = train(family, [0, 5, 9], SMALL, seed=3, policy_cfg=PolicyConfig(width=16, obs_norm=True), observer=seen)
    obs = torch.cat(seen.obs).double().numpy()
    assert obs.shape == (SMALL.total_steps, 14)
    st = _stats(res.policy)
    assert float(st["count"]) == SMALL.total_steps
    np.testing.assert_allclose(st["mean"].numpy(), obs[:, :4].mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(st["var"].numpy(), obs[:, :4].var(0), rtol=1e-9)
    assert st["var"].min() > 1e-4  # CartPole's states vary: a real update, not the initial 1s
    x = torch.as_tensor(obs[:5], dtype=torch.float32)
    out = res.policy.actor.normalize(x)
    assert torch.equal(out[:, 4:], x[:, 4:])  # task ids pass through
    torch.testing.assert_close(out[:, :4], ((x[:, :4].double() - st["mean"]) / torch.sqrt(st["var"] + 1e-8)).float())


def test_update_obs_norm_recomputes_old_log_probs_and_values_under_the_new_statistics():
    family = tasks.make("cartpole-10")
    pol = build_policy(family.obs_dim, 2, True, PolicyConfig(width=16, obs_norm=True), seed=0, task_dim=10)
    venv = family.make_vec([1, 4], 3)
    try:
        batch = collect(pol, venv, RolloutState.start(venv, 0), 20, 0.99, 0.95, torch.Generator().manual_seed(0))
    finally:
        venv.close()
    out = update_obs_norm(pol, batch)
    np.testing.assert_allclose(_stats(pol)["mean"].numpy(), batch.obs[:, :4].double().mean(0).numpy(), rtol=1e-9)
    torch.testing.assert_close(out.logp, log_prob(pol.actor, pol.actor_params(), batch.obs, batch.actions))
    torch.testing.assert_close(out.values, pol.value(batch.obs))
    assert not torch.allclose(out.logp, batch.logp)  # collected under the identity; the statistics changed them
    assert torch.equal(out.advantages, batch.advantages) and torch.equal(out.returns, batch.returns)
    plain = build_policy(family.obs_dim, 2, True, PolicyConfig(width=16), seed=0, task_dim=10)
    assert update_obs_norm(plain, batch) is batch


def test_evaluation_and_feature_collection_leave_the_statistics_alone():
    family = tasks.make("cartpole-10")
    res = train(family, [0, 5, 9], SMALL, seed=1, policy_cfg=PolicyConfig(width=16, obs_norm=True))
    before = _stats(res.policy)
    evaluate(res.policy, family, [0, 5], episodes=2, seed=4)
    evaluate(res.policy, family, [9], episodes=1, seed=5, deterministic=False)
    p = sum(v.numel() for v in res.policy.actor_params().values())
    collect_features(res.policy, family, GaussianProjection(p, 8, seed=0), samples_per_task=16, seed=2, envs_per_task=2)
    after = _stats(res.policy)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fine_tuning_continues_the_statistics_of_its_init():
    family = tasks.make("cartpole-10")
    meta = train(family, [0, 5, 9], SMALL, seed=1, policy_cfg=PolicyConfig(width=16, obs_norm=True))
    start = _stats(meta.policy)
    seen = BatchRecorder()
    tuned = train(family, [5], dataclasses.replace(SMALL, total_steps=2 * 16 * 2), seed=2, init=meta.policy, observer=seen)
    assert all(torch.equal(start[k], v) for k, v in _stats(meta.policy).items())  # the init is copied, not changed
    new = torch.cat(seen.obs)[:, :4].double()
    mean, var, count = merge_moments(start["mean"], start["var"], start["count"], new.mean(0), new.var(0, unbiased=False), len(new))
    st = _stats(tuned.policy)
    assert float(st["count"]) == float(start["count"]) + 64 == float(count)
    torch.testing.assert_close(st["mean"], mean)
    torch.testing.assert_close(st["var"], var)


def test_resumed_training_ends_with_the_same_weights_and_statistics():
    family = tasks.make("cartpole-10")
    cfg = dataclasses.replace(SMALL, total_steps=SMALL.batch_size(3) * 4)
    pcfg = PolicyConfig(width=16, obs_norm=True)
    states: list[TrainState] = []
    full = train(family, [0, 5, 9], cfg, seed=6, policy_cfg=pcfg, on_state=states.append, state_every_s=0.0)
    mid = TrainState.from_dict(states[1].to_dict())  # after 2 of 4 iterations
    assert float(mid.policy["actor.obs_norm.count"]) == 2 * cfg.batch_size(3)
    resumed = train(family, [0, 5, 9], cfg, seed=6, policy_cfg=pcfg, resume=mid)
    a, b = full.policy.state_dict(), resumed.policy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- every functional use of the actor sees the normalised input ----------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("discrete", [True, False])
def test_log_prob_under_vmap_grad_equals_a_per_example_loop_with_normalisation(arch, discrete):
    pol, obs, actions = _fitted_policy(discrete, arch)
    params = pol.actor_params()
    module_logp, _ = pol.log_prob_entropy(obs, actions)
    torch.testing.assert_close(log_prob(pol.actor, params, obs, actions), module_logp)
    raw = functional_call(pol.actor.net, {k[4:]: v for k, v in params.items() if k.startswith("net.")}, (obs,))
    assert not torch.allclose(pol.actor(obs), raw)  # the statistics matter: the raw input gives other outputs
    g = vmap(grad(lambda p, o, a: log_prob(pol.actor, p, o, a)), in_dims=(None, 0, 0))(params, obs, actions)
    for j in range(len(obs)):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        ref = torch.autograd.grad(log_prob(pol.actor, p, obs[j : j + 1], actions[j : j + 1]).sum(), list(p.values()))
        for (k, _), r in zip(p.items(), ref, strict=True):
            torch.testing.assert_close(g[k][j], r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("discrete", [True, False])
def test_kronecker_layer_factors_see_the_normalised_input(discrete):
    pol, obs, actions = _fitted_policy(discrete)
    params = pol.actor_params()
    exact = torch.cat(list(per_sample_grads(pol.actor, params, obs, actions)))
    rebuilt = []
    for delta, a in layer_factors(pol.actor, params, obs, actions):
        rebuilt += [delta] if a is None else [(delta[:, :, None] * a[:, None, :]).reshape(len(a), -1), delta]
    torch.testing.assert_close(torch.cat(rebuilt, 1), exact, rtol=1e-5, atol=1e-6)
    first = layer_factors(pol.actor, params, obs, actions)[1 if not discrete else 0][1]  # net.0's input
    torch.testing.assert_close(first, pol.actor.normalize(obs))


@pytest.mark.parametrize("discrete", [True, False])
def test_maml_fast_path_equals_functional_call_with_normalisation(discrete):
    from policygradex.rl.maml import stacked_forward

    pol, _, _ = _fitted_policy(discrete)
    g = torch.Generator().manual_seed(3)
    phi = {k: v + 0.1 * torch.randn(4, *v.shape, generator=g) for k, v in pol.actor_params().items()}
    obs = 3.0 + 20.0 * torch.randn(4, 5, 9, generator=g)
    ref = vmap(lambda p, o: functional_call(pol.actor, p, (o,)))(phi, obs)
    torch.testing.assert_close(stacked_forward(pol.actor, phi, obs), ref, rtol=1e-5, atol=1e-6)


def test_the_critic_reads_the_normalised_observation():
    pol, obs, _ = _fitted_policy(False)
    torch.testing.assert_close(pol.value(obs), pol.critic(pol.actor.normalize(obs)).squeeze(-1))


# ---- checkpoints and configuration -----------------------------------------------------------------------
def test_checkpoint_round_trip_keeps_the_statistics_and_old_checkpoints_load_without(tmp_path):
    family = tasks.make("cartpole-10")
    res = train(family, [0, 5, 9], SMALL, seed=2, policy_cfg=PolicyConfig(width=16, obs_norm=True))
    path = tmp_path / "policy.pt"
    save_checkpoint(path, res.policy, family, [0, 5, 9])
    ckpt = load_checkpoint(path, family)
    assert ckpt.policy_config.obs_norm is True
    before, after = _stats(res.policy), _stats(ckpt.policy)
    assert all(torch.equal(before[k], after[k]) for k in before)
    obs = torch.randn(6, 14)
    torch.testing.assert_close(ckpt.policy.actor(obs), res.policy.actor(obs), rtol=0, atol=0)
    # a checkpoint written before obs_norm existed: no such key, no buffers -> an MLP without normalisation
    plain = build_policy(family.obs_dim, 2, True, PolicyConfig(width=16), seed=0, task_dim=10)
    save_checkpoint(path, plain, family, [0])
    payload = torch.load(path, weights_only=True)
    del payload["policy_config"]["obs_norm"]
    torch.save(payload, path)
    old = load_checkpoint(path, family)
    assert old.policy_config.obs_norm is False and old.policy.actor.obs_norm is None


def test_metaworld_presets_and_the_user_overrides_in_the_resolved_config():
    mt10 = tasks.make("metaworld-mt10")
    cfg = resolve(mt10, RunConfig())
    assert cfg.meta.policy.obs_norm is True
    assert (cfg.meta.ppo.gae_lambda, cfg.meta.ppo.envs_per_task, cfg.meta.ppo.num_steps) == (0.97, 4, 500)
    assert cfg.meta.ppo.max_grad_norm == 0.5
    off = resolve(mt10, RunConfig(meta=MetaConfig(obs_norm=False)))
    assert off.meta.policy.obs_norm is False
    data = json.loads(json.dumps(to_data(cfg)))
    assert data["meta"]["policy"]["obs_norm"] is True and data["meta"]["ppo"]["gae_lambda"] == 0.97
    assert from_data(ResolvedRun, data) == cfg
    del data["meta"]["policy"]["obs_norm"]  # a config.json written before the option: off
    assert from_data(ResolvedRun, data).meta.policy.obs_norm is False
    cartpole = tasks.make("cartpole-10")
    assert resolve(cartpole, RunConfig()).meta.policy.obs_norm is False
    assert resolve(cartpole, RunConfig(meta=MetaConfig(obs_norm=True))).meta.policy.obs_norm is True
    # the smoke preset is one rollout of the preset's size
    smoke = resolve(mt10, RunConfig(preset="smoke")).meta.ppo
    assert smoke.num_iterations(10) == 1 and smoke.total_steps == smoke.batch_size(10) == 20_000


def test_train_command_resolves_the_family_preset_and_the_option():
    from policygradex.training import resolve_train

    mt10 = tasks.make("metaworld-mt10")
    assert resolve_train(mt10, "smoke")[1].obs_norm is True
    assert resolve_train(mt10, "smoke", obs_norm=False)[1].obs_norm is False
    assert resolve_train(tasks.make("cartpole-10"), "smoke")[1].obs_norm is False
    assert policy_config_for(mt10, width=32, experts=None) == PolicyConfig(width=32, obs_norm=True)


def test_bad_policy_overrides_and_values_are_one_sentence():
    family = tasks.make("cartpole-10")
    with pytest.raises(ConfigError, match="policy_overrides has the key 'width'.*obs_norm"):
        dataclasses.replace(family, policy_overrides={"width": 256})
    with pytest.raises(ConfigError, match="obs_norm='yes' must be True or False"):
        PolicyConfig(obs_norm="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="task_dim=7"):
        build_policy(7, 2, True, PolicyConfig(obs_norm=True), seed=0, task_dim=7)


def test_a_run_made_before_obs_norm_existed_reopens_without_it(tmp_path):
    from policygradex.errors import PolicyGradExError
    from policygradex.rundir import open_run_dir

    policy = {"depth": 4, "width": 64, "activation": "tanh", "init_log_std": 0.0, "arch": "mlp", "experts": None}
    d = tmp_path / "old"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"seed": 0, "meta": {"policy": policy}}))
    assert open_run_dir(d, {"seed": 0, "meta": {"policy": {**policy, "obs_norm": False}}}) == d
    with pytest.raises(PolicyGradExError, match="holds another run"):
        open_run_dir(d, {"seed": 0, "meta": {"policy": {**policy, "obs_norm": True}}})
