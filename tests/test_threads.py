"""The library chooses torch's thread count itself (issue 11, item 5): a direct Python call of
``rl.ppo.train`` or ``rl.evaluate.evaluate`` runs on the library's count and gives the caller's back."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch

from policygradex import tasks
from policygradex.errors import ConfigError
from policygradex.rl.evaluate import evaluate
from policygradex.rl.ppo import ppo_config_for, train
from policygradex.threads import DEFAULT_THREADS, torch_threads


@pytest.fixture
def caller_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


class ThreadSpy:
    """An update observer that records torch's thread count inside the training loop."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def observe(self, iteration: int, policy: Any, batch: Any, lr: float) -> None:
        self.seen.append(torch.get_num_threads())

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _short_training(spy: ThreadSpy) -> None:
    family = tasks.make("planted-toy")
    cfg = ppo_config_for(family, "smoke")
    train(family, [0, 1], replace(cfg, total_steps=cfg.batch_size(2) * 2), seed=0, observer=spy)


def test_train_runs_on_the_library_count_and_restores_the_callers(caller_threads):
    spy = ThreadSpy()
    _short_training(spy)
    assert spy.seen and set(spy.seen) == {DEFAULT_THREADS}
    assert torch.get_num_threads() == caller_threads


def test_an_enclosing_choice_wins(caller_threads):
    spy = ThreadSpy()
    with torch_threads(2):
        _short_training(spy)
        assert torch.get_num_threads() == 2
    assert set(spy.seen) == {2}
    assert torch.get_num_threads() == caller_threads


def test_evaluate_restores_the_callers_count(caller_threads, monkeypatch):
    from policygradex.rl import evaluate as evaluate_module
    from policygradex.rl.policy import PolicyConfig, build_policy

    family = tasks.make("planted-toy")
    policy = build_policy(family.obs_dim, family.action_dim, family.discrete, PolicyConfig(depth=2, width=8), 0)
    seen: list[int] = []
    act = policy.act

    def spying_act(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return act(*args, **kwargs)

    monkeypatch.setattr(policy, "act", spying_act)
    evaluate_module.evaluate(policy, family, [0], episodes=1, seed=0)
    assert seen and set(seen) == {DEFAULT_THREADS}
    assert torch.get_num_threads() == caller_threads
    assert evaluate is evaluate_module.evaluate


def test_nested_calls_inherit_and_bad_counts_are_refused(caller_threads):
    with torch_threads(2) as outer:
        with torch_threads() as inner:
            assert outer == inner == torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == caller_threads
    with pytest.raises(ConfigError, match="threads=0 must be at least 1"), torch_threads(0):
        pass
    assert torch.get_num_threads() == caller_threads
