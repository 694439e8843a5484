"""The ``policygradex`` command line.

Every command prints bad input as one line, ``error: ...``, and exits with status 2.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.pipeline import RunConfig

Preset = Literal["default", "smoke"]


@dataclass(frozen=True)
class FamiliesCmd:
    """List the task families: name, n, action space, metric, source."""

    verbose: bool = False
    """Also print each family's description."""


@dataclass(frozen=True)
class TrainCmd:
    """Train one policy with multitask PPO on all tasks of a family (or a subset), then evaluate it."""

    family: str = "cartpole-10"
    """Task family (see `policygradex families`)."""
    out: Path = Path("runs/train")
    """Run directory to create (or to resume, if it holds this same run)."""
    preset: Preset = "default"
    """Budget preset: 'default' (the family's full budget) or 'smoke' (about a minute, for trying things out)."""
    seed: int = 0
    """Seed of everything random in the run."""
    tasks: tuple[int, ...] | None = None
    """Task indices to train on (default: all tasks of the family)."""
    init: Path | None = None
    """Checkpoint to fine-tune from (default: train from scratch)."""
    total_steps: int | None = None
    """Total environment steps over all tasks (default: the family's budget for the preset)."""
    envs_per_task: int | None = None
    """Parallel environments per task (default 4)."""
    learning_rate: float | None = None
    """Adam learning rate (default: the family's, usually 2.5e-4)."""
    depth: int = 4
    """Linear layers in the actor and the critic (paper: 4)."""
    width: int = 64
    """Hidden units per layer."""
    eval_episodes: int = 20
    """Evaluation episodes per task after training."""
    threads: int = 1
    """Torch CPU threads (small networks run fastest on one)."""
    tensorboard: bool = True
    """Write TensorBoard events beside metrics.jsonl."""


@dataclass(frozen=True)
class EvaluateCmd:
    """Evaluate a checkpoint task by task: mean return (and success rate where the family defines it)."""

    checkpoint: Path
    """The policy.pt to evaluate."""
    episodes: int = 20
    """Episodes per task."""
    seed: int = 0
    """Seed for the environments (and sampled actions)."""
    tasks: tuple[int, ...] | None = None
    """Task indices (default: all tasks of the checkpoint's family)."""
    sample: bool = False
    """Sample actions from the policy instead of taking the most likely one."""
    out: Path | None = None
    """Also write the results as JSON here."""
    threads: int = 1
    """Torch CPU threads."""


@dataclass(frozen=True)
class RunCmd:
    """Run PolicyGradEx end to end: meta-train θ*, gradient features, subset estimates, affinity,
    clustering, group policies, report. Rerunning on the same --out resumes."""

    family: str = "cartpole-10"
    """Task family (see `policygradex families`)."""
    out: Path = Path("runs/run")
    """Run directory to create (or to resume, if it holds this same run)."""
    config: Annotated[RunConfig, tyro.conf.arg(name="")] = field(default_factory=RunConfig)
    stop_after: Literal["meta", "features", "subsets", "estimate", "affinity", "cluster", "groups", "report"] = "report"
    """Last stage to run (later stages can be run with their own subcommands)."""
    threads: int = 1
    """Torch CPU threads in this process."""


@dataclass(frozen=True)
class StageCmd:
    """Run one stage on an existing run directory (made by `policygradex run`)."""

    run: Path
    """The run directory."""
    threads: int = 1
    """Torch CPU threads in this process."""


@dataclass(frozen=True)
class FeaturesCmd(StageCmd):
    """Roll out θ* and compute projected per-sample gradients (features/task_<i>.pt)."""


@dataclass(frozen=True)
class EstimateCmd(StageCmd):
    """Sample subsets, fit the surrogate per subset, score f(S, i), build the affinity (subsets.json,
    scores.jsonl, affinity.npy, coverage.npy)."""


@dataclass(frozen=True)
class ClusterCmd(StageCmd):
    """Cluster the tasks into k groups from the affinity (groups.json)."""


@dataclass(frozen=True)
class TrainGroupsCmd(StageCmd):
    """Train one policy per group (groups/<g>/policy.pt, eval.json)."""


@dataclass(frozen=True)
class ReportCmd(StageCmd):
    """Write results.json, report.md and figures/affinity.png."""


@dataclass(frozen=True)
class ApproxErrorCmd(StageCmd):
    """First-order approximation error of log π along the surrogate's Δθ at relative distances 0.1%–5%,
    on held-out transitions (approx_error.json, approx_error.md, figures/approx_error.png)."""

    directions: int = 20
    """Surrogate directions Δθ_S (distinct subsets) to average over."""


@dataclass(frozen=True)
class GroundTruthCmd(StageCmd):
    """Fine-tune θ* with PPO on every subset and score it as the estimate is scored; true affinity and
    clustering (ground_truth/). Expensive; resumes subset by subset."""

    total_steps: int | None = None
    """PPO env steps per subset (default: meta budget × |S| / n)."""
    executor: Literal["serial", "process"] | None = None
    """Override the run's executor."""
    workers: int | None = None
    """Override the run's worker count."""


@dataclass(frozen=True)
class AgreementCmd(StageCmd):
    """Estimated vs true f(S, i) (rank and linear correlation), NMI of the clusterings with random
    partitions beside it, and the compute speed-up (agreement.json). Needs ground-truth first."""


@dataclass(frozen=True)
class CompareGroupingsCmd(StageCmd):
    """Train group policies for random and gradient-similarity groupings, and one policy for all tasks
    with the same budget, as for the estimated grouping; compare the mean score over all tasks (groupings.json)."""

    random_seeds: int = 2
    """Random groupings to average."""


STAGE_COMMANDS: dict[type, tuple[str, ...]] = {
    FeaturesCmd: ("features",),
    EstimateCmd: ("subsets", "estimate", "affinity"),
    ClusterCmd: ("cluster",),
    TrainGroupsCmd: ("groups",),
    ReportCmd: ("report",),
}


Command = (
    Annotated[FamiliesCmd, tyro.conf.subcommand("families")]
    | Annotated[TrainCmd, tyro.conf.subcommand("train")]
    | Annotated[EvaluateCmd, tyro.conf.subcommand("evaluate")]
    | Annotated[RunCmd, tyro.conf.subcommand("run")]
    | Annotated[FeaturesCmd, tyro.conf.subcommand("features")]
    | Annotated[EstimateCmd, tyro.conf.subcommand("estimate")]
    | Annotated[ClusterCmd, tyro.conf.subcommand("cluster")]
    | Annotated[TrainGroupsCmd, tyro.conf.subcommand("train-groups")]
    | Annotated[ReportCmd, tyro.conf.subcommand("report")]
    | Annotated[ApproxErrorCmd, tyro.conf.subcommand("approx-error")]
    | Annotated[GroundTruthCmd, tyro.conf.subcommand("ground-truth")]
    | Annotated[AgreementCmd, tyro.conf.subcommand("agreement")]
    | Annotated[CompareGroupingsCmd, tyro.conf.subcommand("compare-groupings")]
)


def _set_threads(n: int) -> None:
    import torch

    if n < 1:
        raise ConfigError(f"--threads {n} must be at least 1")
    torch.set_num_threads(n)


def _progress_bar(desc: str):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    bar = tqdm(total=None, desc=desc, unit="it", file=sys.stderr, dynamic_ncols=True)

    def update(it: int, total: int, metrics: dict[str, float]) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = it
        ret = metrics.get("train/episode_return")
        bar.set_postfix_str(f"return {ret:.1f}" if ret is not None else "", refresh=False)
        bar.refresh()

    return bar, update


def cmd_families(cmd: FamiliesCmd) -> None:
    from policygradex import tasks
    from policygradex.errors import MissingExtraError

    for name in tasks.names():
        try:
            f = tasks.make(name)
        except MissingExtraError as e:
            # list it all the same: a missing optional library is no reason to hide the family
            print(f"{name:24s} (needs extra {tasks.extra_of(name)})")
            if cmd.verbose:
                print(f"    {e}")
            continue
        print(f"{name:24s} n={f.n:<3d} {f.describe_action_space():12s} {f.metric:8s} {f.source}")
        if cmd.verbose:
            print(f"    {f.full_name}: {f.description}")


def cmd_train(cmd: TrainCmd) -> None:
    from policygradex import tasks
    from policygradex.rl.checkpoint import load_checkpoint
    from policygradex.rl.policy import PolicyConfig
    from policygradex.rl.ppo import ppo_config_for
    from policygradex.rundir import open_run_dir
    from policygradex.training import train_into

    _set_threads(cmd.threads)
    family = tasks.make(cmd.family)
    ppo = ppo_config_for(
        family, cmd.preset, total_steps=cmd.total_steps, envs_per_task=cmd.envs_per_task, learning_rate=cmd.learning_rate
    )
    policy_cfg = PolicyConfig(depth=cmd.depth, width=cmd.width)
    if cmd.eval_episodes < 1:
        raise ConfigError(f"--eval-episodes {cmd.eval_episodes} must be at least 1")
    task_idx = family.check_indices(cmd.tasks if cmd.tasks is not None else range(family.n))
    ppo.num_iterations(len(task_idx))  # refuse a budget below one rollout before creating anything
    init = load_checkpoint(cmd.init, family).policy if cmd.init is not None else None
    config = {
        "command": "train",
        "family": family.info(),
        "tasks": task_idx,
        "seed": cmd.seed,
        "preset": cmd.preset,
        "ppo": asdict(ppo),
        "policy": asdict(policy_cfg),
        "init": str(cmd.init) if cmd.init else None,
        "eval_episodes": cmd.eval_episodes,
    }
    out = open_run_dir(cmd.out, config)
    bar, update = _progress_bar(f"train {family.name}")
    try:
        res = train_into(
            out, family, task_idx, ppo, policy_cfg, cmd.seed, cmd.eval_episodes,
            init=init, tensorboard=cmd.tensorboard, progress=update,
        )
    finally:
        bar.close()
    if res.resumed:
        print(f"{out} already holds this finished run; showing its evaluation")
    _print_eval(family, res.evaluation.score(family.metric), family.metric)
    print(f"wrote {out}/policy.pt, eval.json, metrics.jsonl")


def _print_eval(family, score: dict[int, float], metric: str) -> None:  # type: ignore[no-untyped-def]
    print(f"{'task':>4s}  {'name':24s} {metric:>10s}")
    for i, v in score.items():
        print(f"{i:>4d}  {family.tasks[i].name:24s} {v:10.3f}")
    print(f"{'mean':>4s}  {'':24s} {sum(score.values()) / len(score):10.3f}")


def cmd_evaluate(cmd: EvaluateCmd) -> None:
    from policygradex import tasks
    from policygradex.io import write_json
    from policygradex.rl.checkpoint import load_checkpoint
    from policygradex.rl.evaluate import evaluate

    _set_threads(cmd.threads)
    ckpt = load_checkpoint(cmd.checkpoint)
    family = tasks.make(ckpt.family)
    load_checkpoint(cmd.checkpoint, family)  # checks version and shapes
    idx = family.check_indices(cmd.tasks if cmd.tasks is not None else range(family.n))
    res = evaluate(ckpt.policy, family, idx, cmd.episodes, cmd.seed, deterministic=not cmd.sample)
    _print_eval(family, res.score(family.metric), family.metric)
    if cmd.out is not None:
        write_json(cmd.out, {"checkpoint": str(cmd.checkpoint), "family": family.full_name, **res.to_dict()})


class _StageBars:
    """One tqdm bar per long stage, fed by the pipeline's progress callback."""

    def __init__(self) -> None:
        self.bars: dict[str, object] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, dynamic_ncols=True)
        bar.total = total  # type: ignore[attr-defined]
        bar.n = done  # type: ignore[attr-defined]
        bar.refresh()  # type: ignore[attr-defined]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()  # type: ignore[attr-defined]


def _print_run_summary(run) -> None:  # type: ignore[no-untyped-def]
    res = run.results()
    print(f"groups: {res['groups']}")
    print(f"mean {res['metric']}: theta* alone {res['mean_meta']:.3f}, group policies {res['mean_group_policy']:.3f}")
    print(f"report: {run.dir / 'report.md'}")


def cmd_run(cmd: RunCmd) -> None:
    from policygradex import pipeline, tasks

    _set_threads(cmd.threads)
    family = tasks.make(cmd.family)
    bars = _StageBars()
    try:
        run = pipeline.open_run(family, cmd.config, cmd.out, bars)
        for stage in pipeline.STAGES[: pipeline.STAGES.index(cmd.stop_after) + 1]:
            run.run_stage(stage)  # type: ignore[arg-type]
    finally:
        bars.close()
    if cmd.stop_after == "report":
        _print_run_summary(run)
    else:
        print(f"stopped after stage {cmd.stop_after!r}; continue with `policygradex run` on --out {run.dir}")


def cmd_study(cmd: StageCmd) -> None:
    from policygradex import pipeline, studies

    _set_threads(cmd.threads)
    bars = _StageBars()
    try:
        run = pipeline.reopen(cmd.run, bars)
        if isinstance(cmd, ApproxErrorCmd):
            res = studies.approx_error(run, directions=cmd.directions)
            print(f"{'distance':>9s} {'first order':>12s} {'zeroth order':>13s}")
            for t in res["errors"]:
                print(f"{t['distance']:>9.1%} {t['first_order']:>12.3%} {t['zeroth_order']:>13.3%}")
            print(f"wrote {run.dir / 'approx_error.md'}")
        elif isinstance(cmd, GroundTruthCmd):
            gt = studies.ground_truth(run, cmd.total_steps, cmd.executor, cmd.workers, progress=bars)
            print(f"true groups: {gt['groups']} ({gt['distinct_subsets']} subsets fine-tuned, {gt['compute_seconds']:.0f} s)")
        elif isinstance(cmd, AgreementCmd):
            ag = studies.agreement(run)
            print(f"spearman {ag['spearman']}, pearson {ag['pearson']}, NMI {ag['nmi']:.3f} "
                  f"(random {ag['nmi_random']:.3f}), speed-up {ag['speedup']:.1f}x")
        elif isinstance(cmd, CompareGroupingsCmd):
            cg = studies.compare_groupings(run, seeds=cmd.random_seeds, progress=bars)
            for name, r in cg["partitions"].items():
                print(f"{name:22s} mean {r['mean']:.3f}  groups {r['groups']}")
    finally:
        bars.close()


def cmd_stage(cmd: StageCmd) -> None:
    from policygradex import pipeline

    if type(cmd) not in STAGE_COMMANDS:
        cmd_study(cmd)
        return
    _set_threads(cmd.threads)
    bars = _StageBars()
    try:
        run = pipeline.reopen(cmd.run, bars)
        for stage in STAGE_COMMANDS[type(cmd)]:
            run.run_stage(stage)  # type: ignore[arg-type]
    finally:
        bars.close()
    if isinstance(cmd, ReportCmd):
        _print_run_summary(run)
    else:
        print(f"{', '.join(STAGE_COMMANDS[type(cmd)])}: done in {run.dir}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``policygradex`` command. Returns the exit status."""
    try:
        # inside the try: configs validate themselves while tyro builds them
        cmd = tyro.cli(Command, args=argv, prog="policygradex", description="PolicyGradEx: task grouping for multitask RL.")  # type: ignore[call-overload]
        if isinstance(cmd, FamiliesCmd):
            cmd_families(cmd)
        elif isinstance(cmd, TrainCmd):
            cmd_train(cmd)
        elif isinstance(cmd, EvaluateCmd):
            cmd_evaluate(cmd)
        elif isinstance(cmd, RunCmd):
            cmd_run(cmd)
        elif isinstance(cmd, StageCmd):
            cmd_stage(cmd)
    except PolicyGradExError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
