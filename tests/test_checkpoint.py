import pytest
import torch

from policygradex import tasks
from policygradex.errors import PolicyGradExError
from policygradex.rl.checkpoint import load_checkpoint, save_checkpoint
from policygradex.rl.policy import PolicyConfig, build_policy


def test_round_trip(tmp_path):
    family = tasks.make("planted-toy")
    pol = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(depth=3, width=32), seed=5)
    save_checkpoint(tmp_path / "p.pt", pol, family, [0, 2], {"seed": 5, "note": "x"})
    ck = load_checkpoint(tmp_path / "p.pt", family)
    assert ck.family == "planted-toy" and ck.task_indices == [0, 2] and ck.meta["seed"] == 5
    assert ck.policy_config == PolicyConfig(depth=3, width=32)
    for k, v in pol.state_dict().items():
        assert torch.equal(ck.policy.state_dict()[k], v)
    obs = torch.randn(3, family.obs_dim)
    assert torch.equal(ck.policy.actor(obs), pol.actor(obs))
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_missing_corrupt_and_mismatched(tmp_path):
    family = tasks.make("planted-toy")
    with pytest.raises(PolicyGradExError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(PolicyGradExError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(PolicyGradExError, match="not a policygradex checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    pol = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(), seed=0)
    save_checkpoint(tmp_path / "toy.pt", pol, family, [0])
    with pytest.raises(PolicyGradExError, match="belongs to family planted-toy"):
        load_checkpoint(tmp_path / "toy.pt", tasks.make("cartpole-10"))
    data = (tmp_path / "toy.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(PolicyGradExError, match="corrupt"):
        load_checkpoint(tmp_path / "trunc.pt")


def test_checkpoint_of_the_wrong_shape_is_one_line_error(tmp_path):
    family = tasks.make("planted-toy")
    pol = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(), seed=0)
    save_checkpoint(tmp_path / "p.pt", pol, family, [0])
    payload = torch.load(tmp_path / "p.pt", weights_only=True)
    payload["state_dict"]["actor.net.0.weight"] = torch.zeros(3, 3)
    torch.save(payload, tmp_path / "p.pt")
    with pytest.raises(PolicyGradExError, match="is damaged.*size mismatch for actor.net.0.weight") as e:
        load_checkpoint(tmp_path / "p.pt", family)
    assert "\n" not in str(e.value)  # the CLI prints it as its one `error:` line
