"""The multitask architectures of issue 14 (SM, CARE, PaCo, MOORE) beside the MLP: shapes, how each
conditions on the task id (against reference computations written out by hand), gradients to every
parameter, the functional log π under vmap(grad) against a per-example loop, a short learning test on
planted-toy, and checkpoints."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from policygradex import tasks
from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.rl.checkpoint import load_checkpoint, save_checkpoint
from policygradex.rl.evaluate import evaluate
from policygradex.rl.networks import ARCHS, CareNet, MooreNet, PacoNet, SoftModularNet
from policygradex.rl.networks.common import gram_schmidt, split_task
from policygradex.rl.policy import PolicyConfig, build_policy, log_prob
from policygradex.rl.ppo import ppo_config_for, train

MULTITASK = [a for a in ARCHS if a != "mlp"]
S, T, A = 6, 4, 3  # state size, task-id length, actions
README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _obs(n: int = 8, seed: int = 0, tasks_: list[int] | None = None) -> torch.Tensor:
    """[n, S + T] observations; row j has task tasks_[j] (default j % T); a task of -1 has an all-zero id."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.zeros(n, S + T)
    obs[:, :S] = torch.randn(n, S, generator=g)
    for j, t in enumerate(tasks_ if tasks_ is not None else [j % T for j in range(n)]):
        if t >= 0:
            obs[j, S + t] = 1.0
    return obs


def _policy(arch: str, discrete: bool = True, seed: int = 0, **kw):
    return build_policy(S + T, A, discrete, PolicyConfig(arch=arch, width=16, **kw), seed=seed, task_dim=T)  # type: ignore[arg-type]


def _actions(discrete: bool, n: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, A, (n,), generator=g) if discrete else torch.randn(n, A, generator=g)


# ---- shapes and configuration ---------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("discrete", [True, False])
def test_output_shapes(arch, discrete):
    pol = _policy(arch, discrete)
    obs = _obs(8)
    assert pol.actor(obs).shape == (8, A)
    assert pol.actor(obs[0]).shape == (A,)  # one sample, no batch dimension
    assert pol.actor(obs.view(2, 4, S + T)).shape == (2, 4, A)  # any leading dimensions
    assert pol.value(obs).shape == (8,)
    actions, logp = pol.act(obs, torch.Generator().manual_seed(0))
    assert actions.shape == ((8,) if discrete else (8, A)) and logp.shape == (8,)
    lp, ent = pol.log_prob_entropy(obs, actions)
    torch.testing.assert_close(lp, logp)
    assert ent.shape == (8,)
    # the functional log π equals the module's, and torch.distributions'
    func = log_prob(pol.actor, pol.actor_params(), obs, actions)
    torch.testing.assert_close(func, lp)
    out = pol.actor(obs)
    ref = (torch.distributions.Categorical(logits=out).log_prob(actions) if discrete
           else torch.distributions.Normal(out, pol.actor.log_std.exp()).log_prob(actions).sum(-1))
    torch.testing.assert_close(func, ref)


@pytest.mark.parametrize("arch", MULTITASK)
def test_all_zero_task_id_is_the_average_task(arch):
    """Held-out tasks carry an all-zero id: the network treats it as the uniform mixture 1/T of the ids."""
    pol = _policy(arch)
    zero = _obs(5, tasks_=[-1] * 5)
    out = pol.actor(zero)
    assert torch.isfinite(out).all() and torch.isfinite(pol.value(zero)).all()
    uniform = zero.clone()
    uniform[:, S:] = 1.0 / T
    torch.testing.assert_close(out, pol.actor(uniform))
    state, ctx = split_task(_obs(4), T)
    torch.testing.assert_close(ctx, torch.eye(T))  # a one-hot id is left as it is
    assert state.shape == (4, S)


def test_config_defaults_and_bad_values():
    assert PolicyConfig().arch == "mlp" and PolicyConfig().experts is None
    assert [PolicyConfig(arch=a).experts for a in MULTITASK] == [2, 6, 5, 4]  # type: ignore[arg-type]
    assert PolicyConfig(arch="care", experts=3).experts == 3
    with pytest.raises(ConfigError, match="arch='transformer' is not an architecture"):
        PolicyConfig(arch="transformer")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="experts=3 applies to the multitask architectures only"):
        PolicyConfig(experts=3)
    with pytest.raises(ConfigError, match="experts=0 must be a positive integer"):
        PolicyConfig(arch="paco", experts=0)
    with pytest.raises(ConfigError, match=r"arch='sm' needs depth ≥ 4, got depth=3"):
        PolicyConfig(arch="sm", depth=3)
    with pytest.raises(ConfigError, match="choose experts ≤ width"):
        PolicyConfig(arch="moore", width=3, experts=4)
    with pytest.raises(ConfigError, match="task_dim=0"):
        build_policy(S + T, A, True, PolicyConfig(arch="sm"), seed=0)  # no task id to read
    build_policy(S + T, A, True, PolicyConfig(), seed=0)  # the MLP needs none


# ---- how each architecture conditions on the task ---------------------------------------------------
def test_sm_forward_equals_written_out_soft_modularization():
    """SM: y⁰_j = module⁰_j(σ(f(s))), y^{l+1}_j = module^{l+1}_j(σ(Σ_i p_ji y^l_i)), out = head(σ(Σ_j w_j y^{L−1}_j)),
    with loops over modules; the routing rows are distributions and differ between tasks for one state."""
    pol = _policy("sm", depth=5, experts=3)  # 3 layers of 3 modules: two routing matrices and the output weights
    net = pol.actor.net
    assert isinstance(net, SoftModularNet)
    obs = _obs(T, tasks_=list(range(T)))
    obs[:, :S] = obs[0, :S]  # one state, every task
    probs, w, h = net.routing(obs)
    assert len(probs) == 2 and all(p.shape == (T, 3, 3) for p in probs) and w.shape == (T, 3)
    for p in [*probs, w]:
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
        assert (p > 0).all()
    assert not torch.allclose(probs[0][0], probs[0][1], atol=1e-6)  # routing depends on the task
    mods = list(net.module_layers)
    out = []
    for b in range(T):
        y = [h[b] @ mods[0].weight[j] + mods[0].bias[j] for j in range(3)]
        for l in range(2):
            y = [torch.tanh(sum(probs[l][b, j, i] * y[i] for i in range(3))) @ mods[l + 1].weight[j] + mods[l + 1].bias[j]
                 for j in range(3)]
        out.append(net.head(torch.tanh(sum(w[b, j] * y[j] for j in range(3)))))
    torch.testing.assert_close(pol.actor(obs), torch.stack(out))


@pytest.mark.parametrize("arch", MULTITASK)
def test_task_enters_only_through_its_task_parameters(arch):
    """Give task 1 the task-specific parameters of task 0 (SM, CARE: its embedding column; PaCo: its
    composition vector; MOORE: its expert weights and its head): tasks 0 and 1 then act identically on
    every state, so the id reaches the output through these parameters only — and before, they differ."""
    pol = _policy(arch)
    state_obs = _obs(6)
    t0, t1 = state_obs.clone(), state_obs.clone()
    t0[:, S:], t1[:, S:] = torch.eye(T)[0], torch.eye(T)[1]
    assert not torch.allclose(pol.actor(t0), pol.actor(t1), atol=1e-6)
    nets = [pol.actor.net, pol.critic]
    with torch.no_grad():
        for net in nets:
            if arch in ("sm", "care"):
                net.task_embedding.weight[:, 1] = net.task_embedding.weight[:, 0]
            elif arch == "paco":
                net.composition[1] = net.composition[0]
            else:
                net.task_weights[1] = net.task_weights[0]
                net.heads.weight[1] = net.heads.weight[0]
                net.heads.bias[1] = net.heads.bias[0]
    torch.testing.assert_close(pol.actor(t0), pol.actor(t1))
    torch.testing.assert_close(pol.value(t0), pol.value(t1))


def test_care_forward_equals_attention_over_encoders():
    """CARE: out = MLP([Σ_i α_i encoder_i(s), z]) with α = softmax over encoders from the task context z."""
    pol = _policy("care", experts=3)
    net = pol.actor.net
    assert isinstance(net, CareNet)
    obs = _obs(8)
    z, alpha = net.context_and_attention(obs)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(8))
    assert not torch.allclose(alpha[0], alpha[1], atol=1e-6)  # rows 0 and 1 are tasks 0 and 1
    torch.testing.assert_close(alpha[0], alpha[T])  # same task, other state: same attention
    first, second = net.encoders
    enc = [torch.tanh(obs[:, :S] @ first.weight[i] + first.bias[i]) @ second.weight[i] + second.bias[i] for i in range(3)]
    mixed = sum(alpha[:, i : i + 1] * enc[i] for i in range(3))
    torch.testing.assert_close(pol.actor(obs), net.main(torch.cat([mixed, z], -1)))


def test_paco_task_policy_is_the_mlp_with_composed_parameters():
    """PaCo: task τ's output is a plain MLP with θ_τ = Φ w_τ (each layer's weight and bias mixed by w_τ)."""
    pol = _policy("paco", experts=5)
    net = pol.actor.net
    assert isinstance(net, PacoNet)
    obs = _obs(8)
    out = pol.actor(obs)
    for b in range(8):
        w = net.composition[b % T]
        h = obs[b, :S]
        layers = net.task_parameters(w)
        for j, (weight, bias) in enumerate(layers):
            h = h @ weight + bias
            if j < len(layers) - 1:
                h = torch.tanh(h)
        torch.testing.assert_close(out[b], h)
    # θ_τ = Φ w_τ by hand for the first layer
    weight0, bias0 = net.task_parameters(net.composition[2])[0]
    torch.testing.assert_close(weight0, sum(net.composition[2, k] * net.layers[0].weight[k] for k in range(5)))
    torch.testing.assert_close(bias0, sum(net.composition[2, k] * net.layers[0].bias[k] for k in range(5)))


def test_gram_schmidt_is_orthonormal_and_matches_qr():
    x = torch.randn(7, 4, 10, dtype=torch.float64)
    u = gram_schmidt(x)
    torch.testing.assert_close(u @ u.transpose(-1, -2), torch.eye(4, dtype=torch.float64).expand(7, 4, 4))
    q, r = torch.linalg.qr(x.transpose(-1, -2))  # the same basis up to the sign of each vector
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-1)
    torch.testing.assert_close(u, (q.transpose(-1, -2) * signs))
    # u_1 is x_1 normalised; u_2 is orthogonal to x_1 and in span(x_1, x_2)
    torch.testing.assert_close(u[:, 0], x[:, 0] / x[:, 0].norm(dim=-1, keepdim=True))
    # collinear vectors give a zero row, not NaN, and finite gradients
    y = torch.stack([x[0, 0], 2 * x[0, 0]]).requires_grad_(True)
    v = gram_schmidt(y)
    assert torch.isfinite(v).all() and float(v[1].detach().norm()) < 1e-6
    v.sum().backward()
    assert torch.isfinite(y.grad).all()


def test_moore_forward_equals_orthogonal_mixture_and_task_head():
    """MOORE: out = head_τ(tanh(Σ_i c_τ,i u_i)) with u = Gram–Schmidt of the expert outputs."""
    pol = _policy("moore", experts=4)
    net = pol.actor.net
    assert isinstance(net, MooreNet)
    obs = _obs(8)
    u = net.representations(obs)
    assert u.shape == (8, 4, 16)
    torch.testing.assert_close(u @ u.transpose(-1, -2), torch.eye(4).expand(8, 4, 4), atol=1e-5, rtol=1e-5)
    out = pol.actor(obs)
    for b in range(8):
        t = b % T
        f = torch.tanh(sum(net.task_weights[t, i] * u[b, i] for i in range(4)))
        torch.testing.assert_close(out[b], f @ net.heads.weight[t] + net.heads.bias[t])


# ---- gradients -------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("discrete", [True, False])
def test_gradients_reach_every_parameter(arch, discrete):
    pol = _policy(arch, discrete)
    obs = _obs(12)  # every task appears
    lp, ent = pol.log_prob_entropy(obs, _actions(discrete, 12))
    (lp.sum() + ent.sum() + pol.value(obs).pow(2).sum()).backward()
    dead = [k for k, p in pol.named_parameters() if p.grad is None or not bool((p.grad != 0).any())]
    assert not dead, dead


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("discrete", [True, False])
def test_log_prob_under_vmap_grad_equals_per_example_loop(arch, discrete):
    pol = _policy(arch, discrete)
    params = pol.actor_params()
    obs = _obs(6, tasks_=[0, 1, 2, 3, -1, 1])  # an all-zero id too
    actions = _actions(discrete, 6)
    g = vmap(grad(lambda p, o, a: log_prob(pol.actor, p, o, a)), in_dims=(None, 0, 0))(params, obs, actions)
    assert set(g) == set(params)
    for j in range(6):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        ref = torch.autograd.grad(log_prob(pol.actor, p, obs[j : j + 1], actions[j : j + 1]).sum(), list(p.values()))
        for k, r in zip(p, ref, strict=True):
            torch.testing.assert_close(g[k][j], r, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", MULTITASK)
def test_log_prob_in_float64(arch):
    """TAG's lookahead evaluates log π with float64 copies of θ and float64 observations."""
    pol = _policy(arch, discrete=False)
    params = {k: v.double() for k, v in pol.actor_params().items()}
    lp = log_prob(pol.actor, params, _obs(5).double(), _actions(False, 5).double())
    assert lp.dtype == torch.float64
    torch.testing.assert_close(lp.float(), log_prob(pol.actor, pol.actor_params(), _obs(5), _actions(False, 5)))


# ---- learning and checkpoints --------------------------------------------------------------------
TASK_BLIND_CEILING = 8 / 3
"""planted-toy: three groups whose rules pick a different action for every context, so a policy that
ignores the task id earns at most 1/3 per step: 8/3 per 8-step episode."""


@pytest.mark.parametrize("arch", ARCHS)
def test_learns_planted_toy(arch):
    """24,576 PPO steps (about 5 s) on planted-toy: the mean return beats the untrained policy by a margin
    and beats every policy that ignores the task id, so the network learned to use the id."""
    family = tasks.make("planted-toy")
    pc = PolicyConfig(arch=arch, width=32)  # type: ignore[arg-type]
    res = train(family, range(family.n), ppo_config_for(family, "smoke", total_steps=24_576), seed=0, policy_cfg=pc)
    untrained = build_policy(family.obs_dim, family.action_dim, True, pc, seed=0, task_dim=family.onehot_size)
    before = np.mean(list(evaluate(untrained, family, range(family.n), episodes=50, seed=1).mean_return.values()))
    after = np.mean(list(evaluate(res.policy, family, range(family.n), episodes=50, seed=1).mean_return.values()))
    assert after > before + 1.0, (before, after)
    assert after > TASK_BLIND_CEILING + 0.4, after


@pytest.mark.parametrize("arch", MULTITASK)
def test_checkpoint_round_trip_rebuilds_the_architecture(arch, tmp_path):
    family = tasks.make("planted-toy")
    pol = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(arch=arch, width=16, experts=3),  # type: ignore[arg-type]
                       seed=5, task_dim=family.onehot_size)
    save_checkpoint(tmp_path / "policy.pt", pol, family, list(range(family.n)))
    ck = load_checkpoint(tmp_path / "policy.pt", family)
    assert ck.policy_config == pol.cfg and ck.policy.cfg.arch == arch and ck.policy.task_dim == family.onehot_size
    assert type(ck.policy.actor.net) is type(pol.actor.net)
    sa, sb = pol.state_dict(), ck.policy.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    obs = torch.randn(5, family.obs_dim)
    torch.testing.assert_close(ck.policy.actor(obs), pol.actor(obs))
    torch.testing.assert_close(ck.policy.value(obs), pol.value(obs))


def test_checkpoint_of_another_task_id_length_is_refused(tmp_path):
    family = tasks.make("planted-toy")
    pol = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(arch="sm"), seed=0,
                       task_dim=family.onehot_size - 1)  # same observation size, another split into state and id
    save_checkpoint(tmp_path / "policy.pt", pol, family, list(range(family.n)))
    with pytest.raises(PolicyGradExError, match="retrain for this family"):
        load_checkpoint(tmp_path / "policy.pt", family)


# ---- the README's table ---------------------------------------------------------------------------
def _readme_counts() -> dict[str, tuple[int, int]]:
    rows = re.findall(r"^\| `(\w+)` \|[^\n]*?\| ([\d,]+) \| ([\d,]+) \|", README, flags=re.M)
    return {a: (int(p.replace(",", "")), int(q.replace(",", ""))) for a, p, q in rows if a in ARCHS}


def test_readme_parameter_counts_for_metaworld_mt10():
    """The README's architecture table: θ (the actor) and actor + critic for metaworld-mt10 at the defaults."""
    family = tasks.make("metaworld-mt10")
    assert (family.raw_obs_dim, family.onehot_size, family.action_dim, family.discrete) == (39, 10, 4, False)
    counts = {}
    for arch in ARCHS:
        pol = build_policy(family.obs_dim, family.action_dim, False, PolicyConfig(arch=arch), seed=0,  # type: ignore[arg-type]
                           task_dim=family.onehot_size)
        counts[arch] = (sum(p.numel() for p in pol.actor.parameters()), sum(p.numel() for p in pol.parameters()))
    assert _readme_counts() == counts
    mlp_actor = (49 * 64 + 64) + 2 * (64 * 64 + 64) + (64 * 4 + 4) + 4  # 3 hidden layers, mean, log σ
    assert counts["mlp"][0] == mlp_actor
    assert math.isclose(counts["paco"][0] - 4 - 10 * 5, 5 * (mlp_actor - 4 - 10 * 64))  # K copies of the state-only MLP


# ---- every learner uses the architecture -----------------------------------------------------------
def test_run_trains_meta_and_group_policies_with_the_architecture(tmp_path, capsys, caplog):
    """`run --meta.arch moore`: config.json records it, θ* and every group policy are MOORE networks, the
    features are gradients over MOORE's θ; a rerun reopens the run and another architecture is refused."""
    import json

    from policygradex.cli import main

    d = tmp_path / "run"
    args = ["run", "--family", "planted-toy", "--meta.arch", "moore", "--meta.experts", "3", "--preset", "smoke",
            "--meta.total-steps", "6144", "--groups.total-steps", "2048", "--estimate.score", "surrogate",
            "--features.samples-per-task", "64", "--meta.tag-every", "0", "--groups.eval-episodes", "2", "--estimate.num-subsets", "10", "--out", str(d), "--log-format", "plain"]
    assert main(args) == 0
    config = json.loads((d / "config.json").read_text())
    assert config["meta"]["policy"] == {"depth": 4, "width": 64, "activation": "tanh", "init_log_std": 0.0,
                                        "arch": "moore", "experts": 3, "obs_norm": False}
    family = tasks.make("planted-toy")
    meta = load_checkpoint(d / "meta" / "policy.pt", family)
    assert isinstance(meta.policy.actor.net, MooreNet) and isinstance(meta.policy.critic, MooreNet)
    assert meta.policy_config.experts == 3
    groups = sorted((d / "groups").glob("*/policy.pt"))
    assert len(groups) == 3
    for path in groups:
        assert load_checkpoint(path, family).policy_config == meta.policy_config
    feats = torch.load(d / "features" / "task_0.pt", weights_only=True)
    assert feats["grads"].shape[0] == 64
    caplog.clear()
    assert main(args) == 0  # the same run: every stage skipped
    assert "meta: skipped: outputs exist" in caplog.text and "groups: skipped: outputs exist" in caplog.text
    capsys.readouterr()
    other = [("sm" if a == "moore" else a) for a in args]
    assert main(other) == 2
    assert ('holds another run (its config differs in: meta.policy.arch: "moore" there, "sm" here)'
            in capsys.readouterr().err)


def test_train_command_takes_the_architecture(tmp_path):
    import json

    from policygradex.cli import main

    d = tmp_path / "train"
    assert main(["train", "--family", "planted-toy", "--arch", "paco", "--experts", "3", "--total-steps", "3072",
                 "--eval-episodes", "2", "--out", str(d), "--log-format", "plain"]) == 0
    assert json.loads((d / "config.json").read_text())["policy"]["arch"] == "paco"
    ck = load_checkpoint(d / "policy.pt", tasks.make("planted-toy"))
    assert isinstance(ck.policy.actor.net, PacoNet) and ck.policy.actor.net.composition.shape == (6, 3)


def test_a_run_made_before_arch_existed_reopens_as_mlp(tmp_path):
    """A config.json written before `arch`/`experts` existed is an MLP run: it reopens with --meta.arch mlp
    (the default), and is refused with another architecture."""
    import json

    from policygradex.rundir import open_run_dir

    policy = {"depth": 4, "width": 64, "activation": "tanh", "init_log_std": 0.0}
    for key in ("meta", None):  # `run` keeps the policy under meta, `train` at the top
        d = tmp_path / str(key)
        d.mkdir()
        old = {"seed": 0, "meta": {"policy": dict(policy)}} if key else {"seed": 0, "policy": dict(policy)}
        (d / "config.json").write_text(json.dumps(old))

        def with_policy(p, key=key):
            return {"seed": 0, "meta": {"policy": p}} if key else {"seed": 0, "policy": p}

        assert open_run_dir(d, with_policy({**policy, "arch": "mlp", "experts": None})) == d
        assert json.loads((d / "config.json").read_text()) == old  # left as it was
        with pytest.raises(PolicyGradExError, match="holds another run"):
            open_run_dir(d, with_policy({**policy, "arch": "sm", "experts": 2}))


@pytest.mark.slow
def test_metaworld_mt10_runs_end_to_end_with_soft_modularization(tmp_path):
    """`run --family metaworld-mt10 --meta.arch sm --preset smoke` with rollout-free scores and 2 evaluation
    episodes per task (about 6 minutes on 2 busy cores; the full smoke preset's rollout scores take far longer):
    every stage runs, θ* and the group policies are SM networks, and success rates are reported."""
    import json

    from policygradex.cli import main

    d = tmp_path / "mt10"
    assert main(["run", "--family", "metaworld-mt10", "--meta.arch", "sm", "--preset", "smoke", "--estimate.score",
                 "surrogate", "--groups.eval-episodes", "2", "--out", str(d), "--log-format", "plain"]) == 0
    family = tasks.make("metaworld-mt10")
    meta = load_checkpoint(d / "meta" / "policy.pt", family)
    assert isinstance(meta.policy.actor.net, SoftModularNet) and meta.policy_config.experts == 2
    groups = json.loads((d / "groups.json").read_text())["groups"]
    assert sorted(i for g in groups for i in g) == list(range(10)) and len(groups) == 3
    for path in sorted((d / "groups").glob("*/policy.pt")):
        assert load_checkpoint(path, family).policy_config == meta.policy_config
    results = json.loads((d / "results.json").read_text())
    assert results["metric"] == "success" and 0.0 <= results["mean_group_policy"] <= 1.0
