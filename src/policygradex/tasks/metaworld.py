"""Meta-World MT10 and MT50 as families (Meta-World 3.x, extra ``[metaworld]``).

``metaworld-mt10`` and ``metaworld-mt50`` have one task per manipulation environment of Meta-World's
MT10 / MT50 (``reach-v3``, ``push-v3``, ...). The metric is the success rate: an episode succeeds when
``info["success"]`` is set at any of its 500 steps. Actions are Meta-World's continuous Box(4) in
[-1, 1]; observations are its 39 numbers, with the goal position visible (MT setting), followed by
this family's own one-hot task id of size n (Meta-World's ``use_one_hot`` is not used).

Goals. Meta-World gives every environment 50 goal configurations, drawn once when the benchmark
object (``metaworld.MT10(seed=...)``) is built; each episode starts from one of them. Every
environment of a family, whatever subset of tasks it is built for, takes its goals from ONE benchmark
object per process (:func:`benchmark`, cached by benchmark name and seed), so a task's goals do not
change with the subset. Meta-World's own custom-subset helper (``Meta-World/custom-mt-envs``) is not
used: it seeds each environment by its position in the subset (the goals change) and sizes its
one-hot by the subset. Which goal an episode gets is drawn from the environment's own stream, seeded
by (run seed, task, copy) and not by the environment's position in the batch (see
:class:`MetaWorldTaskVecEnv`): a task built alone, in a subset or in the full benchmark starts from the
same goal for the same seed.

Reward: Meta-World's reward function version ``REWARD_VERSION`` ("v2"); published MT10 success moves by
tens of points between v1 and v2 (``../shared/paper.md`` §5), so it is part of ``TaskFamily.source``
and with it of every run's saved configuration.

Building the benchmark object takes about 10 s for MT10 and about a minute for MT50 (Meta-World resets
every environment 50 times to draw the goals); building one environment takes about 0.2 s.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from policygradex.tasks.base import GymnasiumTaskVecEnv, Task, TaskFamily, with_task_id
from policygradex.tasks.extras import dist_version, import_extra

EXTRA = "metaworld"
BenchmarkName = Literal["MT10", "MT50"]
BENCHMARK_SEED = 0  # the seed of Meta-World's goal draws; part of the family definition
REWARD_VERSION: Literal["v1", "v2"] = "v2"
EPISODE_STEPS = 500  # Meta-World's max_path_length
RAW_OBS_DIM = 39
ACTION_DIM = 4

# The PPO preset of the metaworld families (issue 14, item 2). The MT10 baselines of Meta-World and of
# the papers in ../shared/paper.md were trained with SAC; ours is PPO. What the two public multitask-PPO
# setups for MT10 use, as far as their code can be read:
#   garage's examples/torch/mtppo_metaworld_mt10.py: γ 0.99, GAE λ 0.95 (garage's PPO default: 0.97),
#     1,024 env steps per update, (64, 64) tanh Gaussian policy, observations NOT normalised (its
#     `normalize` wrapper rescales actions only: normalize_obs defaults to False), garage's PPO defaults
#     otherwise (Adam 2.5e-4, 10 epochs of minibatches of 64, clip 0.2, no entropy bonus);
#   the Meta-World+ baselines (rainx0r/metaworld-algorithms, examples/multi_task/ppo_mt10.py): γ 0.99,
#     GAE λ 0.97, 10,000 env steps per task per update (20 episodes), 16 epochs × 32 minibatches,
#     gradient-norm clip 1.0, Adam 3e-4, entropy 5e-3, tanh-squashed Gaussian of 3 × 400 ReLU layers,
#     no observation normalisation, 2·10⁷ env steps.
# Chosen here: whole 500-step episodes in every batch; GAE λ 0.97 (Meta-World+; candidate 0.95,
# garage's example); 4 episodes per task per rollout (20,000 env steps per MT10 update, 100 updates at
# the default budget: "larger rollouts" as Meta-World+, scaled to this budget; candidate 1, the preset
# before issue 14); observation normalisation on (general PPO practice on MuJoCo: SB3's VecNormalize,
# CleanRL's continuous-action PPO; neither MT10 setup above normalises, so it is a candidate);
# learning rate 3e-4 (Meta-World+; CleanRL's continuous-action value) and no entropy bonus (garage). Kept
# where there is no evidence for this budget: max_grad_norm 0.5 (candidate 1.0, Meta-World+),
# 4 epochs × 4 minibatches (candidate: more), clip 0.2. Continuous actions are already clipped to
# [-1, 1] for the environment (``rl.rollout.step_env``) while the unclipped sample is scored: a clipped
# Gaussian head; no tanh-squashed head (it would change log π's form for every learner).
# benchmarks/bench_metaworld_ppo.py measured the candidates (obs_norm × λ × episodes per rollout, 2 seeds at
# 1M steps, benchmarks/results/metaworld_ppo_sweep.md): no interval separates any two; normalisation on led
# off in 7 of the 8 (setting, seed) pairs, λ 0.97 led 0.95, 1 vs 4 episodes tied, so these stay.
PPO_OVERRIDES: Mapping[str, Any] = {
    "envs_per_task": 4, "num_steps": EPISODE_STEPS, "learning_rate": 3e-4, "ent_coef": 0.0, "gae_lambda": 0.97,
}
POLICY_OVERRIDES: Mapping[str, Any] = {"obs_norm": True}


def _train_steps(n: int) -> dict[str, int]:
    # "default": 200k steps per task (about half an hour for MT10 on one core here; PPO needs far more
    # to solve MT10, so raise it where compute allows); "smoke": one rollout (4 episodes per task).
    return {"default": 200_000 * n, "smoke": EPISODE_STEPS * n * int(PPO_OVERRIDES["envs_per_task"])}


@functools.cache
def benchmark(name: BenchmarkName, seed: int) -> Any:
    """Meta-World's benchmark object ``metaworld.<name>(seed=seed)``, built once per process.

    Every environment of a family takes its goals from this one object, so goals are the same in
    every subset. Building it takes ~10 s (MT10) or ~1 min (MT50).

    Raises:
        MissingExtraError: Meta-World is not installed.
    """
    mw = import_extra("metaworld", EXTRA, f"metaworld-{name.lower()}")
    return getattr(mw, name)(seed=seed)


class MetaWorldTask(gym.Wrapper[Any, Any, Any, Any]):
    """One Meta-World environment with a fixed list of goals; each reset starts from one of them.

    The goal of an episode is drawn from this wrapper's own stream, reseeded by ``reset(seed=...)``;
    Meta-World's own random state is reseeded with it (Meta-World ignores ``reset``'s seed). The
    observation space is the common ``Box(-inf, inf, (39,))``: Meta-World's bounds differ between
    environments, which would stop them sharing a vector environment.

    Args:
        env: a Meta-World environment (``SawyerXYZEnv``), time-limited.
        goals: the environment's goal configurations (Meta-World ``Task`` objects).
    """

    def __init__(self, env: gym.Env[Any, Any], goals: Sequence[Any], source: tuple[BenchmarkName, str] | None = None) -> None:
        super().__init__(env)
        self.goals = list(goals)
        self._rng = np.random.default_rng(0)
        self._source = source
        # Fingerprints of the freshly built model's arrays: Meta-World moves goal sites (and other model
        # fields) at run time, and a compact pickle stores exactly the arrays that changed. A fresh model is
        # the same for every environment of a name, so they are computed once per name and process.
        if source is not None and source not in _FRESH_PRINTS:
            _FRESH_PRINTS[source] = _model_prints(env.unwrapped.model)  # type: ignore[attr-defined]
        self._model_prints = _FRESH_PRINTS[source] if source is not None else None
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (RAW_OBS_DIM,), dtype=np.float64)
        self.env.unwrapped.set_task(self.goals[0])  # type: ignore[attr-defined]

    def __getstate__(self) -> dict[str, Any]:
        """What a pickle of this environment holds (for resuming training mid-run).

        With a ``source`` (the benchmark and environment name it was built from), the simulator's
        MuJoCo model and data (about 42 MB per environment, 600 MB for MT10's training state) are left
        out: the pickle keeps MuJoCo's integration state (``mj_getState``: positions, velocities,
        controls, mocap, warm start), the model arrays that differ from a freshly built model's (Meta-World
        moves goal sites at run time), the time limit's step count and the Python attributes of the
        Meta-World environment; unpickling rebuilds the environment and restores them, so the
        continuation is bit-identical. Without one, everything is pickled.
        """
        if getattr(self, "_source", None) is None:  # also a state pickled before sources existed
            return self.__dict__.copy()
        import mujoco

        time_limit = self.env
        inner: Any = time_limit.unwrapped  # a Meta-World SawyerXYZEnv
        prints: dict[str, str] | None = getattr(self, "_model_prints", None)
        if (not isinstance(time_limit, gym.wrappers.TimeLimit) or time_limit.env is not time_limit.unwrapped
                or prints is None):
            return self.__dict__.copy()  # not the layout make_metaworld_env builds: keep everything
        physics = np.empty(mujoco.mj_stateSize(inner.model, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(inner.model, inner.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        attrs = {k: v for k, v in vars(inner).items() if k not in _REBUILT}
        # Some attributes are views of the simulator's arrays (e.g. pick-place's init_left_pad is a view of
        # data.xpos, so it moves with the gripper): they are restored as views of the rebuilt arrays.
        views = {k: where for k, v in attrs.items() if isinstance(v, np.ndarray) and (where := _view_of(v, inner))}
        attrs = {k: v for k, v in attrs.items() if k not in views}
        compact = {k: v for k, v in self.__dict__.items() if k != "env"}
        changed = {name: np.array(getattr(inner.model, name)) for name, print_ in _model_prints(inner.model).items()
                   if prints.get(name) != print_}
        return {**compact, "_compact_env": {"elapsed": time_limit._elapsed_steps, "attrs": attrs, "physics": physics,
                                            "model": changed, "views": views}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        compact = state.pop("_compact_env", None)
        if compact is None:  # a full pickle, perhaps from before compact pickles: it stays full
            self.__dict__.update({"_source": None, "_model_prints": None, **state})
            return
        import mujoco

        benchmark_name, env_name = state["_source"]
        time_limit = _time_limited(benchmark_name, env_name)
        inner: Any = time_limit.unwrapped
        vars(inner).update(compact["attrs"])
        for key, (owner, field, offset, shape, strides) in compact["views"].items():
            base = getattr(getattr(inner, owner), field)
            vars(inner)[key] = np.ndarray(shape, base.dtype, buffer=base, offset=offset, strides=strides)
        for name, value in compact["model"].items():
            getattr(inner.model, name)[...] = value
        mujoco.mj_setState(inner.model, inner.data, compact["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
        time_limit._elapsed_steps = compact["elapsed"]
        self.__dict__.update({**state, "env": time_limit})

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self.env.unwrapped.seed(seed)  # type: ignore[attr-defined]
        goal = self.goals[int(self._rng.integers(len(self.goals)))]
        self.env.unwrapped.set_task(goal)  # type: ignore[attr-defined]
        return self.env.reset(seed=seed, options=options)


# The Meta-World environment's attributes that a fresh environment rebuilds (the MuJoCo model, its data and
# the renderer that holds both); its state is restored into them (see MetaWorldTask.__getstate__).
_REBUILT = frozenset({"model", "data", "mujoco_renderer"})
# The model fingerprints of a freshly built environment, by (benchmark, environment name).
_FRESH_PRINTS: dict[tuple[str, str], dict[str, str]] = {}


def _model_prints(model: Any) -> dict[str, str]:
    """A digest of each array of a MuJoCo model (its run-time-settable fields), by name."""
    prints = {}
    for name in dir(model):
        if name.startswith("_"):
            continue
        value = getattr(model, name, None)
        if isinstance(value, np.ndarray):
            prints[name] = hashlib.blake2b(np.ascontiguousarray(value).view(np.uint8).data, digest_size=16).hexdigest()
    return prints


def _view_of(array: np.ndarray, env: Any) -> tuple[str, str, int, tuple[int, ...], tuple[int, ...]] | None:
    """Where ``array`` lies inside one of ``env``'s MuJoCo data or model arrays: (owner, field, byte offset,
    shape, strides), or None if it owns its memory."""
    start = array.__array_interface__["data"][0]
    for owner in ("data", "model"):
        obj = getattr(env, owner)
        for field in dir(obj):
            if field.startswith("_"):
                continue
            base = getattr(obj, field, None)
            if not isinstance(base, np.ndarray) or base.nbytes == 0 or not base.flags.c_contiguous:
                continue
            low = base.__array_interface__["data"][0]
            if low <= start < low + base.nbytes and np.shares_memory(array, base):
                return owner, field, start - low, array.shape, array.strides
    return None


def _time_limited(benchmark_name: BenchmarkName, env_name: str) -> gym.wrappers.TimeLimit[Any, Any]:
    """A fresh Meta-World environment ``env_name`` of the cached benchmark, time-limited to one episode."""
    env = benchmark(benchmark_name, BENCHMARK_SEED).train_classes[env_name](reward_function_version=REWARD_VERSION)
    return gym.wrappers.TimeLimit(env, EPISODE_STEPS)


def make_metaworld_env(family: TaskFamily, i: int, *, benchmark_name: BenchmarkName) -> gym.Env[Any, Any]:
    """Task ``i`` of ``family``: its Meta-World environment with the cached benchmark's 50 goals."""
    bench = benchmark(benchmark_name, BENCHMARK_SEED)
    env_name = family.tasks[i].name
    return MetaWorldTask(_time_limited(benchmark_name, env_name), [t for t in bench.train_tasks if t.env_name == env_name],
                         source=(benchmark_name, env_name))


def env_seed(seed: int, task: int, copy: int) -> int:
    """The seed of copy ``copy`` of task ``task`` when a batch is reset with ``seed``."""
    return int(np.random.SeedSequence([seed, task, copy]).generate_state(1)[0])


class MetaWorldTaskVecEnv(GymnasiumTaskVecEnv):
    """:class:`GymnasiumTaskVecEnv` whose environments are seeded by (seed, task, copy), not position.

    With position seeds (``seed + j``), a task's goals and initial states would depend on which other
    tasks precede it in the batch; here they depend only on the task and its copy number.
    """

    def __init__(self, family: TaskFamily, task_indices: Sequence[int], envs_per_task: int) -> None:
        super().__init__(family, task_indices, envs_per_task)
        self.copy_index = np.tile(np.arange(envs_per_task), len(task_indices))

    def reset(self, seed: int) -> np.ndarray:
        seeds: list[int | None] = [env_seed(seed, int(t), int(c)) for t, c in zip(self.task_index, self.copy_index, strict=True)]
        obs, _ = self._env.reset(seed=seeds)
        return with_task_id(obs, self._ids)


def _family(name: str, benchmark_name: BenchmarkName) -> TaskFamily:
    mw = import_extra("metaworld", EXTRA, name)
    env_names = list(getattr(mw.env_dict, f"{benchmark_name}_V3"))
    n = len(env_names)
    return TaskFamily(
        name=name,
        version="v1",
        tasks=tuple(Task(i, env_name, {}) for i, env_name in enumerate(env_names)),
        raw_obs_dim=RAW_OBS_DIM,
        action_space=gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32),
        metric="success",
        source=(
            f"metaworld {dist_version('metaworld')} {benchmark_name} reward {REWARD_VERSION} "
            f"(benchmark seed {BENCHMARK_SEED}, mujoco {dist_version('mujoco')})"
        ),
        make_vec_fn=MetaWorldTaskVecEnv,
        make_env_fn=functools.partial(make_metaworld_env, benchmark_name=benchmark_name),
        train_steps=_train_steps(n),
        ppo_overrides=dict(PPO_OVERRIDES),
        policy_overrides=dict(POLICY_OVERRIDES),
        description=f"Meta-World {benchmark_name}: {n} manipulation tasks, success rate over 500-step episodes, "
        f"goals from one {benchmark_name} benchmark object (seed {BENCHMARK_SEED}), reward {REWARD_VERSION}.",
    )


def metaworld_mt10() -> TaskFamily:
    """``metaworld-mt10``: the 10 environments of Meta-World's MT10.

    Cheap: the benchmark object (and its goals) is built on the first environment, not here.

    Raises:
        MissingExtraError: Meta-World is not installed.
    """
    return _family("metaworld-mt10", "MT10")


def metaworld_mt50() -> TaskFamily:
    """``metaworld-mt50``: the 50 environments of Meta-World's MT50 (see :func:`metaworld_mt10`)."""
    return _family("metaworld-mt50", "MT50")
