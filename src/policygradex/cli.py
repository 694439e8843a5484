"""The ``policygradex`` command line.

Every command prints bad input as one line, ``error: ...``, and exits with status 2.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import tyro

from policygradex.config import BudgetRule, Preset, RunConfig, Stage
from policygradex.console import Console, LogFormat, is_plain
from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.execute import ExecutorKind
from policygradex.meta_rl import MetaRLConfig
from policygradex.report import format_seconds
from policygradex.rl.policy import Arch
from policygradex.threads import torch_threads

RAY_ADDRESS_HELP = (
    "With the ray executor: join the Ray cluster at this address ('auto' for one started on this machine with "
    "`ray start --head`, 'HOST:6379', or 'ray://HOST:10001'); default: a local Ray with --workers CPUs."
)


@dataclass(frozen=True)
class FamiliesCmd:
    """List the task families: name, n, action space, metric, source, and where each comes from when it
    is not built in (an installed package's `policygradex.families` entry point). Your own family without
    a package: `--family package.module:factory`."""

    verbose: bool = False
    """Also print each family's description."""


@dataclass(frozen=True)
class TrainCmd:
    """Train one policy with multitask PPO on all tasks of a family (or a subset), then evaluate it."""

    family: str = "cartpole-10"
    """Task family: a name (see `policygradex families`) or your own as package.module:factory."""
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
    arch: Arch = "mlp"
    """Policy network: 'mlp', 'sm' (Soft Modularization), 'care' (CARE), 'paco' (PaCo), 'moore' (MOORE)."""
    experts: int | None = None
    """Modules per layer (sm, default 2), state encoders (care, 6), parameter sets (paco, 5) or experts
    (moore, 4); not used by mlp."""
    obs_norm: bool | None = None
    """Normalise observations (not the task id) by running mean and variance, clipped to ±10 (None: the
    family's preset; on for metaworld-*, off elsewhere). A policy fine-tuned from --init keeps its own."""
    eval_episodes: int = 20
    """Evaluation episodes per task after training."""
    threads: int = 1
    """Torch CPU threads (small networks run fastest on one)."""
    tensorboard: bool = True
    """Write TensorBoard events beside metrics.jsonl."""
    log_format: LogFormat = "auto"
    """Progress as tqdm bars ('tty') or one plain line per event ('plain', for log files and CI); 'auto':
    bars when stderr is a terminal."""


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
    """Task family: a name (see `policygradex families`) or your own as package.module:factory (a function
    returning a TaskFamily, e.g. from policygradex.tasks.from_gymnasium)."""
    out: Path = Path("runs/run")
    """Run directory to create (or to resume, if it holds this same run)."""
    config: Annotated[RunConfig, tyro.conf.arg(name="")] = field(default_factory=RunConfig)
    stop_after: Stage = "report"
    """Last stage to run (later stages can be run with their own subcommands)."""
    threads: int = 1
    """Torch CPU threads in this process."""
    log_format: LogFormat = "auto"
    """Progress as tqdm bars ('tty') or one plain line per event ('plain', for log files and CI); 'auto':
    bars when stderr is a terminal."""
    ray_address: Annotated[str | None, tyro.conf.arg(help=RAY_ADDRESS_HELP)] = None


@dataclass(frozen=True)
class StageCmd:
    """Run one stage on an existing run directory (made by `policygradex run`)."""

    run: Path
    """The run directory."""
    threads: int = 1
    """Torch CPU threads in this process."""
    log_format: LogFormat = "auto"
    """Progress as tqdm bars ('tty') or one plain line per event ('plain', for log files and CI); 'auto':
    bars when stderr is a terminal."""


@dataclass(frozen=True)
class FeaturesCmd(StageCmd):
    """Roll out θ* and compute projected per-sample gradients (features/task_<i>.pt)."""


@dataclass(frozen=True)
class EstimateCmd(StageCmd):
    """Sample subsets, fit the surrogate per subset, score f(S, i), build the affinity (subsets.json,
    scores.jsonl, affinity.npy, coverage.npy)."""

    ray_address: Annotated[str | None, tyro.conf.arg(help=RAY_ADDRESS_HELP)] = None


@dataclass(frozen=True)
class ClusterCmd(StageCmd):
    """Cluster the tasks into k groups from the affinity (groups.json)."""


@dataclass(frozen=True)
class TrainGroupsCmd(StageCmd):
    """Train one policy per group (groups/<g>/policy.pt, eval.json)."""

    ray_address: Annotated[str | None, tyro.conf.arg(help=RAY_ADDRESS_HELP)] = None


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
    executor: ExecutorKind | None = None
    """Override the run's executor."""
    workers: int | None = None
    """Override the run's worker count."""
    seed: int = 0
    """Truth seed: 0 is the ground truth the estimate is compared with; another seed repeats it with other
    training seeds and evaluation episodes (ground_truth_seed<s>/), for `policygradex noise-ceiling`."""
    ray_address: Annotated[str | None, tyro.conf.arg(help=RAY_ADDRESS_HELP)] = None


@dataclass(frozen=True)
class AgreementCmd(StageCmd):
    """Estimated vs true f(S, i) (rank and linear correlation), NMI of the clusterings with random
    partitions beside it, and the compute speed-up (agreement.json). Needs ground-truth first."""


@dataclass(frozen=True)
class CompareGroupingsCmd(StageCmd):
    """Train group policies for random, gradient-similarity and TAG groupings, one policy for all tasks and
    one per task with the same budget, as for the estimated grouping; compare the mean score over all tasks
    (groupings.json, groupings.md). TAG needs the lookahead recorded by the meta-training (meta.tag_every > 0)."""

    random_seeds: int = 2
    """Random groupings to average."""
    budget: BudgetRule | None = None
    """Group budget rule for every grouping (default: the run's): 'proportional' (meta budget × size / n)
    or 'equal' (meta budget / k)."""
    ray_address: Annotated[str | None, tyro.conf.arg(help=RAY_ADDRESS_HELP)] = None


@dataclass(frozen=True)
class NoiseCeilingCmd(StageCmd):
    """How well the ground truth agrees with itself (ground-truth with --seed 0 and --seed 1): NMI of the
    two true clusterings, Spearman overall and within task, affinity correlation (noise_ceiling.json)."""


@dataclass(frozen=True)
class CompareSeedsCmd:
    """Repeat the pipeline and compare-groupings over several seeds (OUT/seed_<s>/), then every grouping's
    mean with a 95% confidence interval and the estimated grouping against each baseline paired by seed
    (OUT/comparison.json)."""

    family: str = "cartpole-10"
    """Task family: a name (see `policygradex families`) or package.module:factory."""
    out: Path = Path("runs/compare")
    """Folder of the per-seed runs."""
    config: Annotated[RunConfig, tyro.conf.arg(name="")] = field(default_factory=RunConfig)
    seeds: int = 5
    """Number of seeds (0..seeds−1; at least 2 for an interval)."""
    random_seeds: int = 2
    """Random groupings per seed."""
    budget: BudgetRule | None = None
    """Group budget rule (default: the configuration's)."""
    threads: int = 1
    """Torch CPU threads in this process."""
    log_format: LogFormat = "auto"
    """Progress as tqdm bars ('tty') or one plain line per event ('plain', for log files and CI); 'auto':
    bars when stderr is a terminal."""
    ray_address: Annotated[str | None, tyro.conf.arg(help=RAY_ADDRESS_HELP)] = None


@dataclass(frozen=True)
class MetaRLCmd(StageCmd):
    """The paper's meta-RL protocol on a run of a `*-meta-10` family: MAML group policies for the estimated
    grouping, gradient similarity, random groupings and k = 1 (and θ* without MAML), adaptation on the 50
    held-out tasks, the (a)/(b)/(c) assignment comparison and each group's Hessian trace (meta_rl/,
    meta_rl.json, meta_rl.md). Resumes; --seeds N gives mean ± 95% CI over N seeds."""

    config: Annotated[MetaRLConfig, tyro.conf.arg(name="")] = field(default_factory=MetaRLConfig)
    ray_address: Annotated[str | None, tyro.conf.arg(help=RAY_ADDRESS_HELP)] = None


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
    | Annotated[NoiseCeilingCmd, tyro.conf.subcommand("noise-ceiling")]
    | Annotated[CompareSeedsCmd, tyro.conf.subcommand("compare-seeds")]
    | Annotated[MetaRLCmd, tyro.conf.subcommand("meta-rl")]
)


def cmd_families(cmd: FamiliesCmd, console: Console) -> None:
    from policygradex import tasks
    from policygradex.errors import MissingExtraError

    for name in tasks.names():
        origin = tasks.origin_of(name)
        mark = "" if origin == tasks.BUILT_IN else f"  [{origin}]"
        try:
            f = tasks.make(name)
        except MissingExtraError as e:
            # list it all the same: a missing optional library is no reason to hide the family
            print(f"{name:24s} (needs extra {tasks.extra_of(name)}){mark}")
            if cmd.verbose:
                print(f"    {e}")
            continue
        except PolicyGradExError as e:  # a broken entry point of some installed package: say so, list the rest
            print(f"{name:24s} (cannot be built: {e}){mark}")
            continue
        print(f"{name:24s} n={f.n:<3d} {f.describe_action_space():12s} {f.metric:8s} {f.source}{mark}")
        if cmd.verbose:
            print(f"    {f.full_name}: {f.description}")


def cmd_train(cmd: TrainCmd, console: Console) -> None:
    from policygradex import tasks
    from policygradex.config import to_data
    from policygradex.rl.checkpoint import load_checkpoint
    from policygradex.rundir import open_run_dir
    from policygradex.training import resolve_train, train_into

    family = tasks.make(cmd.family)
    ppo, policy_cfg, task_idx = resolve_train(
        family, cmd.preset, total_steps=cmd.total_steps, envs_per_task=cmd.envs_per_task,
        learning_rate=cmd.learning_rate, depth=cmd.depth, width=cmd.width, arch=cmd.arch, experts=cmd.experts,
        obs_norm=cmd.obs_norm, eval_episodes=cmd.eval_episodes,
        task_indices=cmd.tasks, seed=cmd.seed,
    )
    init = load_checkpoint(cmd.init, family).policy if cmd.init is not None else None
    config = {
        "command": "train",
        "family": family.info(),
        "tasks": task_idx,
        "seed": cmd.seed,
        "preset": cmd.preset,
        "ppo": to_data(ppo),
        "policy": to_data(init.cfg if init is not None else policy_cfg),  # a fine-tuned policy keeps its own
        "init": str(cmd.init) if cmd.init else None,
        "eval_episodes": cmd.eval_episodes,
    }
    out = open_run_dir(cmd.out, config)

    def update(it: int, total: int, metrics: dict[str, float]) -> None:
        ret = metrics.get("train/episode_return")
        console("train", it, total, f", return {ret:.1f}" if ret is not None else "")

    res = train_into(
        out, family, task_idx, ppo, policy_cfg, cmd.seed, cmd.eval_episodes,
        init=init, tensorboard=cmd.tensorboard, progress=update,
    )
    console.finish("train")
    if res.resumed:
        print(f"{out} already holds this finished run; showing its evaluation")
    _print_eval(family, res.evaluation.score(family.metric), family.metric)
    print(f"wrote {out}: policy, evaluation, metrics")


def _print_eval(family, score: dict[int, float], metric: str) -> None:
    print(f"{'task':>4s}  {'name':24s} {metric:>10s}")
    for i, v in score.items():
        print(f"{i:>4d}  {family.tasks[i].name:24s} {v:10.3f}")
    print(f"{'mean':>4s}  {'':24s} {sum(score.values()) / len(score):10.3f}")


def cmd_evaluate(cmd: EvaluateCmd, console: Console) -> None:
    from policygradex import tasks
    from policygradex.config import check_seed
    from policygradex.io import write_json
    from policygradex.rl.checkpoint import load_checkpoint
    from policygradex.rl.evaluate import evaluate

    check_seed(cmd.seed)
    if cmd.episodes < 1:
        raise ConfigError(f"--episodes {cmd.episodes} must be at least 1")
    ckpt = load_checkpoint(cmd.checkpoint)
    family = tasks.make(ckpt.family_ref)
    load_checkpoint(cmd.checkpoint, family)  # checks version and shapes
    idx = family.check_indices(cmd.tasks if cmd.tasks is not None else range(family.n))
    res = evaluate(ckpt.policy, family, idx, cmd.episodes, cmd.seed, deterministic=not cmd.sample)
    _print_eval(family, res.score(family.metric), family.metric)
    if cmd.out is not None:
        write_json(cmd.out, {"checkpoint": str(cmd.checkpoint), "family": family.full_name, **res.to_dict()})


def _print_run_summary(run, console: Console) -> None:
    """The end of a run: groups, the mean score change, the total time, where the report is."""
    from policygradex.pipeline import results

    res = results(run)
    change = res["mean_group_policy"] - res["mean_meta"]
    metric = "success rate" if res["metric"] == "success" else "return"
    print("summary:")
    print(f"  groups: {res['groups']}")
    print(f"  mean {metric}: theta* alone {res['mean_meta']:.3f} -> group policies {res['mean_group_policy']:.3f} "
          f"({change:+.3f})")
    print(f"  total time: {format_seconds(console.elapsed())} in this command "
          f"({format_seconds(sum(run.store.load_timings().values()))} of stage work recorded for this run)")
    print(f"  report: {run.store.report_path} and {run.store.report_html_path}")


def cmd_run(cmd: RunCmd, console: Console) -> None:
    from policygradex import pipeline, tasks

    family = tasks.make(cmd.family)
    with _executor_session(cmd.config.executor, cmd.config.workers, cmd.ray_address):
        res = pipeline.run(family, cmd.config, cmd.out, console, stop_after=cmd.stop_after)
    if cmd.stop_after == "report":
        _print_run_summary(pipeline.reopen(res.directory), console)
    else:
        print(f"stopped after stage {cmd.stop_after!r} in {format_seconds(console.elapsed())}; "
              f"continue with `policygradex run` on --out {res.directory}")


@contextlib.contextmanager
def _executor_session(kind: ExecutorKind, workers: int, ray_address: str | None, parallel: bool = True) -> Iterator[None]:
    """Join or start Ray for the command when it runs parallel work on the ray executor, before any work
    (a missing Ray or an unreachable cluster is one line), and disconnect afterwards."""
    if kind != "ray" or not parallel:
        if ray_address is not None:
            raise ConfigError(f"--ray-address {ray_address!r} is for the ray executor, and this command runs {kind!r}; "
                              "pass --executor ray")
        yield
        return
    from policygradex import execute

    started = execute.start_ray(ray_address, workers)
    try:
        yield
    finally:
        if started:
            execute.shutdown_ray()


def _stages(*stages: str):
    """A handler that runs ``stages`` of the pipeline on an existing run directory."""

    def handler(cmd: StageCmd, console: Console) -> None:
        from policygradex import pipeline

        run = pipeline.reopen(cmd.run, console)
        with _executor_session(run.config.executor, run.config.workers, getattr(cmd, "ray_address", None),
                               hasattr(cmd, "ray_address")):
            for stage in stages:
                # the report, asked for by name, is written afresh; other stages skip what they find done
                pipeline.run_stage(run, stage, force=stage == "report")  # type: ignore[arg-type]
        if "report" in stages:
            _print_run_summary(run, console)
        else:
            print(f"{', '.join(stages)}: done in {run.dir}")

    return handler


def _study(fn):
    """A handler that reopens the run directory and calls ``fn(cmd, run, progress)``."""

    def handler(cmd: StageCmd, console: Console) -> None:
        from policygradex import pipeline

        run = pipeline.reopen(cmd.run, console)
        kind = getattr(cmd, "executor", None) or run.config.executor
        workers = getattr(cmd, "workers", None) or run.config.workers
        with _executor_session(kind, workers, getattr(cmd, "ray_address", None), hasattr(cmd, "ray_address")):
            fn(cmd, run, console)

    return handler


def _approx_error(cmd: ApproxErrorCmd, run, progress) -> None:
    from policygradex import studies

    res = studies.approx_error(run, directions=cmd.directions)
    print(f"{'distance':>9s} {'first order':>12s} {'zeroth order':>13s}")
    for t in res["errors"]:
        print(f"{t['distance']:>9.1%} {t['first_order']:>12.3%} {t['zeroth_order']:>13.3%}")
    print(f"wrote {run.store.approx_error_md}")


def _ground_truth(cmd: GroundTruthCmd, run, progress) -> None:
    from policygradex import studies

    gt = studies.ground_truth(run, cmd.total_steps, cmd.executor, cmd.workers, progress=progress, seed=cmd.seed)
    print(f"true groups: {gt['groups']} ({gt['distinct_subsets']} subsets fine-tuned, {gt['compute_seconds']:.0f} s)")


def _agreement(cmd: AgreementCmd, run, progress) -> None:
    from policygradex import studies

    ag = studies.agreement(run)
    print(f"spearman {ag['spearman']}, pearson {ag['pearson']}, NMI {ag['nmi']:.3f} "
          f"(random {ag['nmi_random']:.3f}), speed-up {ag['speedup']:.1f}x")


def _compare_groupings(cmd: CompareGroupingsCmd, run, progress) -> None:
    from policygradex import studies

    cg = studies.compare_groupings(run, seeds=cmd.random_seeds, progress=progress, budget=cmd.budget)
    for name, r in cg["partitions"].items():
        print(f"{name:22s} mean {r['mean']:.3f}  groups {r['groups']}")
    for name, why in cg["skipped"].items():
        print(f"{name:22s} skipped: {why}")
    print(f"wrote {run.store.groupings_table_file(cg['budget'])}")


def _noise_ceiling(cmd: NoiseCeilingCmd, run, progress) -> None:
    from policygradex import studies

    nc = studies.noise_ceiling(run)
    print(f"ground truth vs itself: NMI {nc['nmi']:.3f} (random {nc['nmi_random']:.3f}), spearman {nc['spearman']}, "
          f"within task {nc['spearman_within_task']}, affinity correlation {nc['affinity_correlation']}")


def _meta_rl(cmd: MetaRLCmd, run, progress) -> None:
    from policygradex import meta_rl

    res = meta_rl.meta_rl(run, cmd.config, progress=progress)
    for setting in res["settings"]:
        print(f"after {setting} adaptation step(s), mean return on the held-out tasks:")
        for name, v in res["main"][setting].items():
            ci = "" if v["ci95"] is None else f" [{v['ci95'][0]:.1f}, {v['ci95'][1]:.1f}]"
            paper = "" if v["paper"] is None else f"  (paper {v['paper']})"
            print(f"  {name:22s} {v['mean']:8.1f}{ci}{paper}")
    print(f"wrote {run.store.meta_rl_json} and {run.store.meta_rl_md}")


def cmd_compare_seeds(cmd: CompareSeedsCmd, console: Console) -> None:
    from policygradex import studies, tasks

    if cmd.seeds < 1:
        raise ConfigError(f"--seeds {cmd.seeds} must be at least 1")
    if cmd.random_seeds < 1:
        raise ConfigError(f"--random-seeds {cmd.random_seeds} must be at least 1")
    family = tasks.make(cmd.family)
    from policygradex.config import resolve

    resolve(family, cmd.config)  # every value checked before the first run starts
    with _executor_session(cmd.config.executor, cmd.config.workers, cmd.ray_address):
        res = studies.compare_over_seeds(family, cmd.config, cmd.out, list(range(cmd.seeds)), cmd.random_seeds,
                                         cmd.budget, progress=console)
    for name, s in res["summary"].items():
        ci = "" if s["ci95"] is None else f" [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"
        print(f"{name:22s} mean {s['mean']:.3f}{ci}")
    for name, by_seed in res["skipped"].items():
        print(f"{name:22s} skipped in seed(s) {', '.join(by_seed)}: {next(iter(by_seed.values()))}")
    print(f"wrote {cmd.out}/comparison.json")


HANDLERS: dict[type, Callable[[Any, Console], None]] = {
    FamiliesCmd: cmd_families,
    TrainCmd: cmd_train,
    EvaluateCmd: cmd_evaluate,
    RunCmd: cmd_run,
    FeaturesCmd: _stages("features"),
    EstimateCmd: _stages("subsets", "estimate", "affinity"),
    ClusterCmd: _stages("cluster"),
    TrainGroupsCmd: _stages("groups"),
    ReportCmd: _stages("report"),
    ApproxErrorCmd: _study(_approx_error),
    GroundTruthCmd: _study(_ground_truth),
    AgreementCmd: _study(_agreement),
    CompareGroupingsCmd: _study(_compare_groupings),
    NoiseCeilingCmd: _study(_noise_ceiling),
    CompareSeedsCmd: cmd_compare_seeds,
    MetaRLCmd: _study(_meta_rl),
}
"""Sub-command → handler: the whole dispatch of the command line."""


_BORDER = "│╭╰╮╯"


def parse_error_line(box: str) -> str:
    """One sentence from the box tyro prints for a command line it cannot parse.

    >>> parse_error_line("╭─ Value error ─╮\n│ Error parsing --k: invalid literal for int() with base 10: '2.5' │\n╰─╯")
    "--k: '2.5' is not an integer"
    """
    # tyro draws a box on a terminal and plain lines with "---" rules elsewhere: both are read here
    sections: list[list[str]] = [[]]
    for raw in box.splitlines():
        line = raw.strip().strip(_BORDER).strip()
        if line and set(line) <= set("─-═ ") or (line.startswith("─") and line.endswith("─")):
            sections.append([])
        elif line:
            sections[-1].append(line)
    body = [s for s in sections if s]
    if body and len(body[0]) == 1 and ":" not in body[0][0] and len(body) > 1:
        body = body[1:]  # the box's title ("Value error", "Required options", ...)
    if not body:
        return "the command line could not be parsed; see `policygradex --help`"
    first = " ".join(body[0]).split(" Got errors:")[0].strip()
    hint = next((" ".join(s) for s in body[1:] if s[0].startswith("For full helptext")), "")
    help_cmd = re.sub(r"^For full helptext, (run|see):?\s*", "", hint).strip()
    m = re.match(r"Error parsing (\S+): (.*)$", first)
    if m:
        option, why = m.groups()
        value = re.findall(r"'([^']*)'|\['([^']*)'\]", why)
        got = next((a or b for a, b in value[::-1]), None)
        if "int()" in why or "INT" in why:
            first = f"{option}: {got!r} is not an integer"
        elif "float" in why or "FLOAT" in why:
            first = f"{option}: {got!r} is not a number"
        else:
            first = f"{option}: {why}"
    elif first.startswith("Missing from"):
        options = ", ".join(line for line in body[0] if line.startswith("--"))
        first = body[0][0].replace("Missing from", "missing option for").rstrip(":") + f": {options}"
    elif first.startswith("Unrecognized options"):
        first = first.replace("Unrecognized options", "unrecognized argument(s)").split(" Available subcommands")[0]
        if len(body) > 1 and body[1][0].startswith("Available subcommands"):
            first += "; " + " ".join(body[1]).replace("Available subcommands", "commands are")
    return f"{first.rstrip('.')}" + (f" (see `{help_cmd}`)" if help_cmd else "")


def _parse(argv: list[str] | None) -> object:
    """The command for ``argv``; a parse error raises :class:`PolicyGradExError` with one line."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(Command, args=argv, prog="policygradex", description="PolicyGradEx: task grouping for multitask RL.")
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise PolicyGradExError(parse_error_line(err.getvalue())) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``policygradex`` command. Returns the exit status."""
    try:
        # inside the try: configs validate themselves while tyro builds them
        cmd = _parse(argv)
        plain = is_plain(getattr(cmd, "log_format", "auto"))
        with torch_threads(getattr(cmd, "threads", None)), Console(plain) as console:
            HANDLERS[type(cmd)](cmd, console)
    except PolicyGradExError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (e.g. `| head`): not an error of the command
        return 0
    except OSError as e:  # an output that cannot be written (permissions, a full disk, a file in the path)
        print(f"error: {e.strerror or e}: {e.filename!r}; choose another --out or free the path", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
