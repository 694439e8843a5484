"""TAG's lookahead recorded during the meta-training (issue 12, item 3): a pure observer of PPO (θ* is
bit-identical with it on or off), whose running mean is the mean of the lookaheads computed directly,
survives a resume, and is saved and validated by the store."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from policygradex import pipeline, studies, tasks
from policygradex.config import MetaConfig, RunConfig, stage_seed
from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.grouping.baselines import LookaheadBatch, tag_affinity, tag_lookahead
from policygradex.rl.policy import PolicyConfig, build_policy, log_prob
from policygradex.rl.ppo import TrainState, ppo_config_for, streams, train
from policygradex.rl.rollout import Batch, RolloutState, collect
from policygradex.training import TagLookahead, _load_state

ROLLOUT = 3072  # one planted-toy rollout: 6 tasks × 4 envs × 128 steps


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


# ---- the observer on hand-made batches ---------------------------------------------------------------
def _batch(seed: int, policy, n: int = 3, rows: int = 40, centre: int | None = None) -> Batch:
    """``rows`` transitions per task, interleaved as a rollout interleaves them; task ``centre``'s
    advantages centred, so its loss at θ_old is 0 and its column of Z undefined."""
    g = torch.Generator().manual_seed(seed)
    task = torch.arange(n).repeat(rows)
    obs = torch.randn(n * rows, 5, generator=g)
    actions = torch.randint(0, 3, (n * rows,), generator=g)
    adv = torch.randn(n * rows, generator=g) + 0.5 * (task.float() - 1)
    shift = 0.2 * torch.randn(n * rows, generator=g)  # θ ≠ θ_old: ratios away from 1, some clipped
    if centre is not None:  # ratio 1 and centred advantages: L(θ_old) = −mean Â = 0
        rows_c = task == centre
        adv[rows_c] -= adv[rows_c].mean()
        shift[rows_c] = 0.0
    with torch.no_grad():
        logp = log_prob(policy.actor, policy.actor_params(), obs, actions) + shift
    zeros = torch.zeros(n * rows)
    return Batch(obs, actions, logp, zeros, adv, zeros, task)


def _by_hand(policy, batch: Batch, n: int, lr: float) -> torch.Tensor:
    """Z of one batch, with each task's rows picked out here (no normalisation: norm_adv=False)."""
    parts = [LookaheadBatch(batch.obs[batch.task == t].double(), batch.actions[batch.task == t],
                            batch.advantages[batch.task == t].double(), batch.logp[batch.task == t].double())
             for t in range(n)]
    params = {k: v.double() for k, v in policy.actor_params().items()}
    return tag_lookahead(policy.actor, params, parts, lr, clip_coef=0.2)


def test_running_mean_is_tag_affinity_of_every_lookahead_with_undefined_entries_skipped() -> None:
    policy = build_policy(5, 3, True, PolicyConfig(depth=2, width=8), seed=0)
    obs = TagLookahead(range(3), every=1, clip_coef=0.2, norm_adv=False)
    batches = [_batch(0, policy), _batch(1, policy, centre=1), _batch(2, policy)]
    lrs = [0.5, 0.3, 0.1]
    zs = [_by_hand(policy, b, 3, lr) for b, lr in zip(batches, lrs, strict=True)]
    assert torch.isnan(zs[1][:, 1]).all() and torch.isfinite(zs[0]).all()  # the case the counts are for
    for it, (b, lr) in enumerate(zip(batches, lrs, strict=True)):
        obs.observe(it, policy, b, lr)
    assert obs.lookaheads == 3 and obs.seconds > 0
    np.testing.assert_array_equal(obs.count.numpy(), [[3, 2, 3]] * 3)
    np.testing.assert_allclose(obs.mean(), np.nanmean(torch.stack(zs).numpy(), axis=0), rtol=1e-12)
    np.testing.assert_allclose(tag_affinity([obs.mean()]), tag_affinity(zs), rtol=1e-12)
    # the batches and the parameters are left as they were
    assert torch.equal(batches[1].advantages, _batch(1, policy, centre=1).advantages)
    assert all(torch.equal(v, build_policy(5, 3, True, PolicyConfig(depth=2, width=8), seed=0).actor_params()[k])
               for k, v in policy.actor_params().items())


def test_only_every_kth_update_is_looked_at_and_advantages_are_normalised_over_the_batch() -> None:
    policy = build_policy(5, 3, True, PolicyConfig(depth=2, width=8), seed=0)
    obs = TagLookahead(range(3), every=2, clip_coef=0.2, norm_adv=True)
    b = _batch(3, policy)
    for it in range(5):
        obs.observe(it, policy, b, 0.2)
    assert obs.lookaheads == 3  # iterations 0, 2 and 4
    a = b.advantages
    normalised = replace(b, advantages=(a - a.mean()) / (a.std() + 1e-8))
    np.testing.assert_allclose(obs.mean(), _by_hand(policy, normalised, 3, 0.2).numpy(), rtol=1e-12)
    with pytest.raises(ConfigError, match="tag_every=0"):
        TagLookahead(range(3), every=0, clip_coef=0.2, norm_adv=True)


# ---- in the meta-training ----------------------------------------------------------------------------
def test_theta_star_is_bit_identical_with_the_hook_on_or_off(tmp_path) -> None:
    family = tasks.make("planted-toy")
    runs = {}
    for every in (1, 0):
        cfg = RunConfig(preset="smoke", seed=5, meta=MetaConfig(total_steps=4 * ROLLOUT, tag_every=every))
        pipeline.run(family, cfg, tmp_path / f"every{every}", stop_after="meta")
        runs[every] = pipeline.reopen(tmp_path / f"every{every}")
    on, off = runs[1], runs[0]
    a, b = _weights(on.store.meta_checkpoint), _weights(off.store.meta_checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((on.store.meta_dir / "eval.json").read_text())["mean_return"] == \
        json.loads((off.store.meta_dir / "eval.json").read_text())["mean_return"]
    assert on.store.load_tag(6).lookaheads == 4 and not off.store.has_tag()
    assert json.loads((on.dir / "config.json").read_text())["meta"]["tag_every"] == 1


def test_saved_mean_of_one_update_is_the_lookahead_recomputed_by_hand(tmp_path) -> None:
    """K = 1 and a single PPO update: meta/tag.pt holds exactly the Z of θ's initial weights on the first
    rollout, rebuilt here from the run's seed without the observer."""
    family = tasks.make("planted-toy")
    cfg = RunConfig(preset="smoke", seed=1, meta=MetaConfig(total_steps=ROLLOUT, tag_every=1))
    pipeline.run(family, cfg, tmp_path / "run", stop_after="meta")
    run = pipeline.reopen(tmp_path / "run")
    ppo = run.config.meta.ppo
    seed = stage_seed(run.seed, "meta")
    policy = build_policy(family.obs_dim, family.action_dim, family.discrete, run.config.meta.policy, seed)
    env_seed, gen, _ = streams(seed)
    venv = family.make_vec(range(family.n), ppo.envs_per_task)
    try:
        batch = collect(policy, venv, RolloutState.start(venv, env_seed), ppo.num_steps, ppo.gamma, ppo.gae_lambda, gen)
    finally:
        venv.close()
    adv = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)  # as the update sees them
    z = _by_hand(policy, replace(batch, advantages=adv), family.n, ppo.learning_rate)

    rec = run.store.load_tag(family.n)
    assert rec.lookaheads == 1 and rec.every == 1 and (rec.count == 1).all()
    np.testing.assert_allclose(rec.mean, z.numpy(), rtol=1e-10, atol=0)
    U = studies.tag_affinity_of(run)
    assert isinstance(U, np.ndarray)
    np.testing.assert_allclose(U, tag_affinity([z]), rtol=1e-10, atol=0)
    assert np.allclose(U, U.T) and (np.diag(U) == 0).all()


def test_resume_keeps_the_running_sum_and_count() -> None:
    family = tasks.make("planted-toy")
    cfg = ppo_config_for(family, "smoke", total_steps=5 * ROLLOUT)
    full = TagLookahead(range(family.n), 2, cfg.clip_coef, cfg.norm_adv)
    states: list[TrainState] = []
    res = train(family, range(6), cfg, seed=4, observer=full, on_state=states.append, state_every_s=0)
    assert full.lookaheads == 3  # iterations 0, 2, 4
    mid = states[2]  # after 3 iterations: the lookaheads of iterations 0 and 2, copied when captured
    assert mid.iteration == 3 and mid.observer is not None and mid.observer["lookaheads"] == 2
    # the state as train_state.pt holds it
    import io

    buf = io.BytesIO()
    torch.save(mid.to_dict(), buf)
    buf.seek(0)
    mid = TrainState.from_dict(torch.load(buf, weights_only=True))
    resumed = TagLookahead(range(family.n), 2, cfg.clip_coef, cfg.norm_adv)
    res2 = train(family, range(6), cfg, seed=4, observer=resumed, resume=mid)
    assert resumed.lookaheads == 3
    assert torch.equal(resumed.sum, full.sum) and torch.equal(resumed.count, full.count)
    a, b = res.policy.state_dict(), res2.policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a state without the observer's entry cannot continue it; one of another K is refused
    with pytest.raises(ConfigError, match="no observer state"):
        train(family, range(6), cfg, seed=4, observer=resumed, resume=TrainState.from_dict({**mid.to_dict(), "observer": None}))
    with pytest.raises(ValueError, match="every 2"):
        TagLookahead(range(family.n), 3, cfg.clip_coef, cfg.norm_adv).load_state_dict(mid.observer)


def test_a_saved_state_without_the_observer_restarts_an_observed_training(tmp_path) -> None:
    family = tasks.make("planted-toy")
    cfg = ppo_config_for(family, "smoke", total_steps=2 * ROLLOUT)
    states: list[TrainState] = []
    train(family, range(6), cfg, seed=0, on_state=states.append, state_every_s=0)
    torch.save(states[0].to_dict(), tmp_path / "train_state.pt")  # made by a training without the hook
    assert _load_state(tmp_path, observed=True) is None
    loaded = _load_state(tmp_path, observed=False)
    assert loaded is not None and loaded.iteration == 1


def test_store_refuses_a_damaged_tag_file(tmp_path) -> None:
    family = tasks.make("planted-toy")
    cfg = RunConfig(preset="smoke", seed=0, meta=MetaConfig(total_steps=ROLLOUT, tag_every=1))
    pipeline.run(family, cfg, tmp_path / "run", stop_after="meta")
    run = pipeline.reopen(tmp_path / "run")
    with pytest.raises(PolicyGradExError, match=r"does not hold a TAG lookahead of 5 tasks"):
        run.store.load_tag(5)
    payload = torch.load(run.store.tag_path, weights_only=True)
    payload["mean"][0, 1] = float("nan")  # undefined although counted
    torch.save(payload, run.store.tag_path)
    with pytest.raises(PolicyGradExError, match="does not hold a TAG lookahead"):
        run.store.load_tag(6)
    why = studies.tag_affinity_of(run)
    assert isinstance(why, str) and "unusable" in why and "tag.pt" in why
    run.store.tag_path.write_bytes(b"not a torch file")
    with pytest.raises(PolicyGradExError, match="is corrupt"):
        run.store.load_tag(6)


def test_a_run_made_before_tag_every_reopens_with_the_same_settings(tmp_path) -> None:
    """`run --out OLD_DIR` keeps working on runs made before the TAG hook: the hook only observes
    training, so a config.json without meta.tag_every matches; any other difference still refuses."""
    from policygradex.errors import PolicyGradExError
    from policygradex.rundir import open_run_dir

    config = {"family": "planted-toy", "seed": 0, "meta": {"lr": 0.001, "tag_every": 10}}
    old = {"family": "planted-toy", "seed": 0, "meta": {"lr": 0.001}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert open_run_dir(tmp_path, config) == tmp_path
    assert json.loads((tmp_path / "config.json").read_text()) == old  # left as it was
    with pytest.raises(PolicyGradExError, match=r"differs in: meta"):
        open_run_dir(tmp_path, {**config, "meta": {"lr": 0.01, "tag_every": 10}})
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(PolicyGradExError, match=r"differs in: meta"):
        open_run_dir(tmp_path, {**config, "meta": {"lr": 0.001, "tag_every": 5}})
