"""The structured (Khatri–Rao) projection of issue 11: unbiased, adjoint, exact against per-sample
gradients, reproducible, picklable, refused on actors it cannot decompose, and usable end to end."""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch
from torch import nn

from policygradex import pipeline, tasks
from policygradex.cli import main
from policygradex.config import ResolvedRun, from_data, resolve, to_data
from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.gradex.features import (
    flatten,
    layer_factors,
    per_sample_grads,
    projected_grads,
    unflatten,
)
from policygradex.gradex.projection import (
    GaussianProjection,
    KroneckerProjection,
    from_record,
    kronecker_blocks,
    make_projection,
    projection_record,
)
from policygradex.rl.checkpoint import load_checkpoint
from policygradex.rl.networks import ARCHS
from policygradex.rl.policy import Actor, PolicyConfig, build_policy, log_prob
from policygradex.rundir import open_run_dir


def _setup(discrete: bool, depth: int, width: int = 6, n: int = 5, seed: int = 0):
    pol = build_policy(5, 3, discrete, PolicyConfig(depth=depth, width=width), seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    obs = torch.randn(n, 5, generator=gen)
    actions = torch.randint(0, 3, (n,), generator=gen) if discrete else torch.randn(n, 3, generator=gen)
    params = pol.actor_params()
    exact = torch.cat(list(per_sample_grads(pol.actor, params, obs, actions)))  # [n, p]
    return pol, params, obs, actions, exact


# ---- the layout ------------------------------------------------------------------------------------------
def test_blocks_follow_theta_order_with_dense_narrow_layers_and_log_std():
    cat = build_policy(14, 2, True, PolicyConfig(depth=4, width=64), seed=0).actor
    blocks = kronecker_blocks(cat)
    assert [(b.name, b.out, b.inp, b.kron) for b in blocks] == [
        ("net.0", 64, 14, True), ("net.2", 64, 64, True), ("net.4", 64, 64, True), ("net.6", 2, 64, False)]
    assert sum(b.size for b in blocks) == flatten(dict(cat.named_parameters())).numel() == 9410
    gauss = build_policy(7, 4, False, PolicyConfig(depth=1, width=8), seed=0).actor
    # log_std is the actor's own parameter, so named_parameters (θ's order) lists it first
    assert [(b.name, b.out, b.inp, b.kron) for b in kronecker_blocks(gauss)] == [
        ("log_std", 4, 0, False), ("net.0", 4, 7, False)]
    assert [(b.name, b.kron) for b in kronecker_blocks(gauss, dense_width=2)] == [("log_std", False), ("net.0", True)]


# ---- exactness: the structured path is Pᵀg for the exact per-sample gradient g --------------------------
@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_structured_features_equal_the_projection_of_exact_gradients_and_the_adjoint_holds(discrete, depth):
    pol, params, obs, actions, exact = _setup(discrete, depth, n=23)
    proj = KroneckerProjection(kronecker_blocks(pol.actor, dense_width=2), d=40, seed=3)
    assert proj.p == exact.shape[1]
    assert any(b.kron for b in proj.blocks) and (discrete or not proj.blocks[0].kron)
    fast = projected_grads(pol.actor, params, obs, actions, proj, chunk=7)  # 4 backward passes
    torch.testing.assert_close(fast, proj.project(exact), rtol=1e-5, atol=1e-5)
    w = torch.randn(3, 40, generator=torch.Generator().manual_seed(9))
    lifted = proj.lift(w)  # [3, p]
    assert lifted.shape == (3, proj.p)
    # ⟨Pᵀg, w⟩ = ⟨g, P w⟩ for every sample's exact gradient g and every w
    torch.testing.assert_close(fast @ w.T, exact @ lifted.T, rtol=1e-4, atol=1e-4)
    # first order: log π(θ* + εPw) − log π(θ*) ≈ ε g̃ᵀw
    eps = 1e-4 / float(lifted[0].norm())
    p64 = {k: v.double() for k, v in params.items()}  # float64, so the difference is not round-off
    moved = unflatten(flatten(p64) + eps * lifted[0].double(), p64)
    change = log_prob(pol.actor, moved, obs.double(), actions) - log_prob(pol.actor, p64, obs.double(), actions)
    predicted = eps * (fast @ w[0]).double()
    torch.testing.assert_close(change, predicted, rtol=1e-2, atol=1e-3 * float(predicted.abs().max()))


def test_layer_factors_are_the_per_sample_outer_product_factors():
    pol, params, obs, actions, exact = _setup(False, 3, n=9)
    parts = layer_factors(pol.actor, params, obs, actions)
    blocks = kronecker_blocks(pol.actor)
    rebuilt = []
    for b, (delta, a) in zip(blocks, parts, strict=True):
        assert delta.shape == (9, b.out) and (a is None) == (b.inp == 0)
        if a is None:
            rebuilt.append(delta)
        else:  # weight gradient δ aᵀ (row-major), then the bias gradient δ
            rebuilt += [(delta[:, :, None] * a[:, None, :]).reshape(len(a), -1), delta]
    torch.testing.assert_close(torch.cat(rebuilt, 1), exact, rtol=1e-5, atol=1e-6)


def test_lift_of_a_unit_vector_is_one_rank_one_column_per_layer():
    """Column j of a Khatri–Rao block is u_j v_jᵀ / √d: rank one, entries ±1/√d (Rademacher factors)."""
    pol = build_policy(5, 3, True, PolicyConfig(depth=2, width=6), seed=0)
    proj = KroneckerProjection(kronecker_blocks(pol.actor, dense_width=0), d=16, seed=1)
    col = proj.lift(torch.eye(16)[5])
    off = proj.offsets()
    for k, b in enumerate(proj.blocks):
        seg = col[off[k] : off[k + 1]]
        mat = torch.cat([seg[: b.out * b.inp].reshape(b.out, b.inp), seg[b.out * b.inp :, None]], 1)
        assert torch.linalg.matrix_rank(mat) == 1
        torch.testing.assert_close(mat.abs(), torch.full_like(mat, 1 / 4))
    gauss = KroneckerProjection(proj.blocks, d=16, seed=1, factors="gaussian").lift(torch.eye(16)[5])
    assert gauss.abs().std() > 0.05  # Gaussian factors: entries of varying size


# ---- unbiasedness: E⟨g̃_i, g̃_j⟩ = ⟨g_i, g_j⟩ -------------------------------------------------------------
@pytest.mark.parametrize(("discrete", "factors", "dense_width"),
                         [(True, "rademacher", 0), (True, "gaussian", 0), (False, "rademacher", 8), (True, "rademacher", 8)])
def test_inner_products_are_unbiased_over_seeds(discrete, factors, dense_width):
    pol, params, obs, actions, exact = _setup(discrete, 2, n=5)
    G = exact.double() @ exact.double().T
    parts = layer_factors(pol.actor, params, obs, actions)
    blocks = kronecker_blocks(pol.actor, dense_width=dense_width)
    grams = []
    for seed in range(3000):
        gt = KroneckerProjection(blocks, d=8, seed=seed, factors=factors).project_layers(parts).double()
        grams.append(gt @ gt.T)
    stack = torch.stack(grams)  # [S, n, n]
    mean, se = stack.mean(0), stack.std(0) / math.sqrt(len(grams))
    z = (mean - G).abs() / se
    assert z.max() < 5, (z.max(), mean, G)
    # the test has power: a sketch scaled by √2 (inner products doubled) would be rejected
    assert ((mean - 2 * G).abs() / se).diagonal().min() > 5


# ---- reproducible, picklable, recorded ---------------------------------------------------------------------
def test_seeded_picklable_and_rebuilt_from_its_record():
    pol, params, obs, actions, _ = _setup(True, 4, width=16, n=12)
    proj = make_projection("kronecker", pol.actor, d=32, seed=5)
    a = projected_grads(pol.actor, params, obs, actions, proj)
    assert torch.equal(a, projected_grads(pol.actor, params, obs, actions, make_projection("kronecker", pol.actor, 32, 5)))
    assert not torch.allclose(a, projected_grads(pol.actor, params, obs, actions, make_projection("kronecker", pol.actor, 32, 6)))
    assert proj._cache  # factors were generated ...
    state = pickle.loads(pickle.dumps(proj))
    assert state._cache == {} and state == proj  # ... but travel as the definition only
    assert torch.equal(projected_grads(pol.actor, params, obs, actions, state), a)
    record = json.loads(json.dumps(projection_record(proj)))
    assert record["kind"] == "kronecker" and record["p"] == proj.p and record["d"] == 32
    assert from_record(record) == proj
    old = from_record({"p": 100, "d": 8, "seed": 3})  # runs made before issue 11 have no kind: Gaussian
    assert isinstance(old, GaussianProjection) and old == GaussianProjection(p=100, d=8, seed=3)
    g = make_projection("gaussian", pol.actor, d=32, seed=5)
    assert isinstance(g, GaussianProjection) and from_record(projection_record(g)) == g
    with pytest.raises(ConfigError, match="blocks hold"):
        from_record({**record, "p": proj.p + 1})
    with pytest.raises(ConfigError, match="'sparse' is unknown"):
        from_record({**record, "kind": "sparse"})


# ---- actors it cannot decompose ---------------------------------------------------------------------------
class _Gated(Actor):
    """Not the MLP actor: another forward (as an architecture of another family of networks would be)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs) * 2


def test_unsupported_actor_modules_fail_with_one_sentence_and_gaussian_still_works():
    cfg = PolicyConfig(depth=2, width=8)
    normed = build_policy(5, 3, True, cfg, seed=0)
    normed.actor.net.insert(1, nn.LayerNorm(8))
    gated = _Gated(5, 3, True, cfg)
    no_bias = build_policy(5, 3, True, cfg, seed=0)
    no_bias.actor.net[0] = nn.Linear(5, 8, bias=False)
    cases = [(normed.actor, "net.1 (LayerNorm"), (gated, "not a _Gated"), (no_bias.actor, "net.0 has none")]
    obs, actions = torch.randn(4, 5), torch.randint(0, 3, (4,))
    for actor, expected in cases:
        with pytest.raises(ConfigError, match="use --features.projection gaussian") as err:
            make_projection("kronecker", actor, d=8, seed=0)
        assert expected in str(err.value) and "\n" not in str(err.value)
        params = {k: v.detach() for k, v in actor.named_parameters()}
        g = make_projection("gaussian", actor, d=8, seed=0)
        exact = torch.cat(list(per_sample_grads(actor, params, obs, actions)))
        torch.testing.assert_close(projected_grads(actor, params, obs, actions, g), exact @ g.matrix())
    for arch in [a for a in ARCHS if a != "mlp"]:  # the multitask architectures (issue 14)
        pol = build_policy(8, 3, True, PolicyConfig(arch=arch), seed=0, task_dim=3)
        with pytest.raises(ConfigError, match="not this actor's .*; use --features.projection gaussian"):
            make_projection("kronecker", pol.actor, d=8, seed=0)
        params, o = pol.actor_params(), torch.randn(4, 8)
        g = make_projection("gaussian", pol.actor, d=8, seed=0)
        exact = torch.cat(list(per_sample_grads(pol.actor, params, o, actions)))
        torch.testing.assert_close(projected_grads(pol.actor, params, o, actions, g), exact @ g.matrix())
    family = tasks.make("planted-toy")
    with pytest.raises(ConfigError, match="SoftModularNet; use --features.projection gaussian"):  # before any work
        resolve(family, pipeline.RunConfig(meta=pipeline.MetaConfig(arch="sm"),
                                           features=pipeline.FeatureConfig(projection="kronecker")))
    plain = build_policy(5, 3, True, cfg, seed=0)
    wider = build_policy(5, 3, True, PolicyConfig(depth=2, width=9), seed=0)
    with pytest.raises(ConfigError, match="another architecture"):
        projected_grads(plain.actor, plain.actor_params(), obs, actions, make_projection("kronecker", wider.actor, 8, 0))


# ---- configuration: recorded, resumed, old runs open as Gaussian -------------------------------------------
def test_config_records_the_projection_and_old_runs_open_as_gaussian(tmp_path):
    family = tasks.make("planted-toy")
    kron = resolve(family, pipeline.RunConfig(preset="smoke", features=pipeline.FeatureConfig(projection="kronecker")))
    data = json.loads(json.dumps(to_data(kron)))
    assert data["features"]["projection"] == "kronecker"
    assert from_data(ResolvedRun, data) == kron
    with pytest.raises(ConfigError, match="features.projection='dense' must be 'gaussian' or 'kronecker'"):
        pipeline.FeatureConfig(projection="dense")  # type: ignore[arg-type]
    default = to_data(resolve(family, pipeline.RunConfig(preset="smoke")))
    old = json.loads(json.dumps(default))
    del old["features"]["projection"]  # a config.json written before issue 11
    assert from_data(ResolvedRun, old).features.projection == "gaussian"
    d = tmp_path / "old"
    open_run_dir(d, old)
    assert open_run_dir(d, default) == d  # the default configuration resumes it
    with pytest.raises(PolicyGradExError, match="config differs in: features"):
        open_run_dir(d, to_data(kron))


def test_smoke_pipeline_with_the_kronecker_projection_end_to_end(tmp_path, capsys):
    d = tmp_path / "run"
    args = ["run", "--family", "planted-toy", "--preset", "smoke", "--features.projection", "kronecker", "--out", str(d)]
    assert main(args) == 0
    assert "groups: [[0, 3], [1, 4], [2, 5]]" in capsys.readouterr().out  # the planted groups
    record = json.loads((d / "features" / "projection.json").read_text())
    config = json.loads((d / "config.json").read_text())
    assert record["kind"] == "kronecker" and config["features"]["projection"] == "kronecker"
    assert "(kronecker projection)" in (d / "report.md").read_text()
    run = pipeline.reopen(d)
    proj = from_record(run.store.load_projection())
    assert isinstance(proj, KroneckerProjection)
    # the estimate's Δθ_S = P·w_S is the stored projection's lift: g̃ᵀw = gᵀΔθ on stored transitions
    feats = run.store.load_features(run.family.n)[2]
    policy = load_checkpoint(run.store.meta_checkpoint, run.family).policy
    exact = torch.cat(list(per_sample_grads(policy.actor, policy.actor_params(), feats["obs"][:50], feats["actions"][:50])))
    w = run.store.load_weights().float()[:5]
    raw, _ = pipeline.surrogate_deltas(run, run.store.load_weights())
    torch.testing.assert_close(feats["grads"][:50] @ w.T, exact @ proj.lift(w).T, rtol=1e-3, atol=1e-4)
    scale = torch.from_numpy(raw[:5]).norm(dim=1) / proj.lift(w).norm(dim=1)
    torch.testing.assert_close(torch.from_numpy(raw[:5]), proj.lift(w) * scale[:, None])
    assert main(args) == 0  # a rerun resumes: every stage skipped, nothing rewritten
    assert json.loads((d / "features" / "projection.json").read_text()) == record
    assert main(["approx-error", "--run", str(d)]) == 0
    errors = json.loads((d / "approx_error.json").read_text())["errors"]
    assert errors[0]["distance"] == 0.001 and errors[0]["first_order"] < 0.05
    capsys.readouterr()
    assert main([*args[:-1], str(tmp_path / "other"), "--features.projection", "dense"]) == 2
    assert "dense" in capsys.readouterr().err and not (tmp_path / "other").exists()
