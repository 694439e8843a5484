"""The run-directory store: the only module that knows artifact file names and layouts.

A directory belongs to one run, identified by its ``config.json``. Reusing it with the same
configuration resumes (completed artifacts are kept); reusing it with another configuration, or
pointing at a folder with unrelated files, is refused so no run overwrites another.

Layout of a pipeline run (``policygradex run``)::

    config.json                 resolved configuration
    meta/                       θ*: policy.pt, eval.json, metrics.jsonl, tb/, train_state.pt while training;
                                tag.pt: TAG's lookahead averaged over the meta-training (meta.tag_every > 0)
    features/                   task_<i>.pt (grads [N, d], advantages [N], logp [N], obs, actions), projection.json
    subsets.json                the m subsets with their seeds
    estimate/                   weights.pt [m, d], fit.json, chunks/chunk_<c>.json (rollout scores, resumable)
    scores.jsonl                f(S, i): one line per (subset, task)
    affinity.npy, affinity_task.npy, affinity_aggregate.npy, coverage.npy
    groups.json, groups/<g>/    the partition; one trained policy directory per group
    results.json, report.md, report.html, figures/, timings.json (wall-clock of each stage)
    approx_error.json/.md, ground_truth/, agreement.json, baselines/<name>/<g>/, groupings.json/.md   (studies)
    meta_rl/                    the meta-RL protocol (issue 13): config.json, test_features.pt,
                                seed_<s>/partitions.json, seed_<s>/<grouping>/<g>/ (policy.pt, maml_state.pt while
                                training, result.json: adaptation on the held-out tasks, Hessian trace)
    meta_rl.json, meta_rl.md    the protocol's tables

Every write is atomic (``policygradex.io``). Every ``load_*`` names the command that makes a missing
file, and turns a corrupt file into one line naming it.
"""

from __future__ import annotations

import json
import os
import pickle
import typing
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policygradex.errors import PolicyGradExError
from policygradex.io import atomic_path, read_json, write_bytes, write_json, write_npy, write_text

CONFIG_FILE = "config.json"

# ---- a directory holding one trained policy (train, meta/, groups/<g>/) ----------------------------
POLICY_FILE = "policy.pt"
EVAL_FILE = "eval.json"
TRAIN_STATE_FILE = "train_state.pt"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"


def policy_path(directory: str | os.PathLike[str]) -> Path:
    """The checkpoint of a trained policy in ``directory``."""
    return Path(directory) / POLICY_FILE


def eval_path(directory: str | os.PathLike[str]) -> Path:
    """The evaluation of the policy in ``directory``."""
    return Path(directory) / EVAL_FILE


def train_state_path(directory: str | os.PathLike[str]) -> Path:
    """The resumable training state kept while training into ``directory`` (removed when done)."""
    return Path(directory) / TRAIN_STATE_FILE


def metrics_path(directory: str | os.PathLike[str]) -> Path:
    """The JSONL metrics of training into ``directory``."""
    return Path(directory) / METRICS_FILE


def tensorboard_dir(directory: str | os.PathLike[str]) -> Path:
    """TensorBoard events of training into ``directory``."""
    return Path(directory) / TENSORBOARD_DIR


def is_trained(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds a finished, evaluated policy."""
    return policy_path(directory).exists() and eval_path(directory).exists()


def trained_files(directory: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every file of a finished policy directory (relative path → contents), without the training state:
    what a worker that trained in its own scratch directory sends back (issue 15)."""
    d = Path(directory)
    return {
        p.relative_to(d).as_posix(): p.read_bytes()
        for p in sorted(d.rglob("*")) if p.is_file() and p.name != TRAIN_STATE_FILE
    }


def save_trained(directory: str | os.PathLike[str], files: dict[str, bytes]) -> None:
    """Write a finished policy directory from :func:`trained_files`, each file atomically and the
    checkpoint and evaluation last, so the directory counts as trained only once it is complete.

    Raises:
        PolicyGradExError: the files lack the checkpoint or evaluation, or a path leaves the directory.
    """
    d = Path(directory)
    last = (POLICY_FILE, EVAL_FILE)
    if any(name not in files for name in last):
        raise PolicyGradExError(f"the trained files for {str(d)!r} lack {POLICY_FILE} or {EVAL_FILE}; rerun the stage")
    for rel in files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise PolicyGradExError(f"the trained files for {str(d)!r} hold a path outside it ({rel!r}); rerun the stage")
    for rel in sorted(files, key=lambda r: (r in last, last.index(r) if r in last else 0, r)):
        write_bytes(d / rel, files[rel])


# ---- TAG's lookahead averaged over a training (issue 12, item 3) -----------------------------------------
TAG_FILE = "tag.pt"
TAG_FORMAT = "policygradex-tag/1"


@dataclass(frozen=True)
class TagRecord:
    """TAG's lookahead inter-task affinity averaged over a training (Fifty et al. 2021).

    Attributes:
        mean: Z̄, shape ``[n, n]`` float64: row i the task stepped on, column j the task measured; the mean of
            the defined entries of the collected matrices, NaN where none was defined.
        count: ``[n, n]`` int64: how many collected matrices defined each entry.
        every: the lookahead was computed every ``every`` PPO updates.
        lookaheads: matrices collected.
        seconds: compute time of the lookaheads (the observer's overhead on the training).
    """

    mean: np.ndarray
    count: np.ndarray
    every: int
    lookaheads: int
    seconds: float


def tag_path(directory: str | os.PathLike[str]) -> Path:
    """The averaged TAG lookahead of the training in ``directory``."""
    return Path(directory) / TAG_FILE


def save_tag(directory: str | os.PathLike[str], record: TagRecord) -> None:
    """Write ``record`` to ``directory``'s ``tag.pt`` atomically."""
    payload = {
        "format": TAG_FORMAT, "mean": torch.as_tensor(record.mean, dtype=torch.float64),
        "count": torch.as_tensor(record.count, dtype=torch.int64), "every": int(record.every),
        "lookaheads": int(record.lookaheads), "seconds": float(record.seconds),
    }
    with atomic_path(tag_path(directory)) as tmp:
        torch.save(payload, tmp)


def load_tag(directory: str | os.PathLike[str], n: int, fix: str) -> TagRecord:
    """The averaged TAG lookahead in ``directory`` for ``n`` tasks.

    Raises:
        PolicyGradExError: a missing, corrupt or inconsistent file (``fix`` says what to do).
    """
    path = tag_path(directory)
    if not path.exists():
        raise PolicyGradExError(f"{path} is missing; {fix}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError):
        raise PolicyGradExError(f"{str(path)!r} is corrupt; {fix}") from None
    ok = isinstance(data, dict) and data.get("format") == TAG_FORMAT
    if ok:
        mean, count = data.get("mean"), data.get("count")
        ok = (
            isinstance(mean, torch.Tensor) and isinstance(count, torch.Tensor)
            and mean.shape == (n, n) and count.shape == (n, n) and mean.dtype == torch.float64
            and isinstance(data.get("every"), int) and data["every"] >= 1
            and isinstance(data.get("lookaheads"), int) and isinstance(data.get("seconds"), float)
        )
    if ok:
        defined = count > 0
        ok = (
            bool((count >= 0).all()) and bool((count <= data["lookaheads"]).all())
            and bool(torch.isfinite(mean[defined]).all()) and bool(torch.isnan(mean[~defined]).all())
        )
    if not ok:
        raise PolicyGradExError(
            f"{str(path)!r} does not hold a TAG lookahead of {n} tasks ({TAG_FORMAT}: mean and count [{n}, {n}]); {fix}"
        )
    return TagRecord(data["mean"].numpy(), data["count"].numpy(), data["every"], data["lookaheads"], data["seconds"])


# ---- run directories --------------------------------------------------------------------------------
def open_run_dir(out: str | os.PathLike[str], config: dict[str, Any]) -> Path:
    """Create ``out`` for a run with ``config`` or reopen it if it holds the same run.

    Args:
        out: the run directory.
        config: the resolved configuration (plain JSON data, every default written out).

    Returns:
        The directory path; ``config.json`` is in it.

    Raises:
        PolicyGradExError: ``out`` is a file, holds another run, or holds files that are not a run's.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise PolicyGradExError(f"output path {str(path)!r} is a file; pass a directory for --out")
    cfg_path = path / CONFIG_FILE
    if cfg_path.exists():
        existing, config = _with_policy_defaults(read_config(path)), _with_policy_defaults(config)
        meta, wanted = existing.get("meta"), config.get("meta")
        if isinstance(meta, dict) and isinstance(wanted, dict) and "tag_every" not in meta:
            # A run made before meta.tag_every reopens: the TAG hook only observes training (θ* does not
            # depend on it); such a run has no TAG record, which compare-groupings reports.
            config = {**config, "meta": {k: v for k, v in wanted.items() if k != "tag_every"}}
        feats, wanted_feats = existing.get("features"), config.get("features")
        if (isinstance(feats, dict) and isinstance(wanted_feats, dict) and "projection" not in feats
                and wanted_feats.get("projection") == "gaussian"):
            # A run made before features.projection (issue 11) used the Gaussian projection.
            config = {**config, "features": {k: v for k, v in wanted_feats.items() if k != "projection"}}
        if _normalise(existing) != _normalise(config):
            diff = _differences(_normalise(existing), _normalise(config))
            shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
            raise PolicyGradExError(
                f"output directory {str(path)!r} holds another run (its config differs in: {shown or 'values'}); "
                "pass that run's settings to resume it, choose a new --out or delete that directory"
            )
        return path
    if path.exists() and any(not p.name.startswith(".") for p in path.iterdir()):
        raise PolicyGradExError(
            f"output directory {str(path)!r} is not empty and holds no policygradex run; choose a new --out"
        )
    path.mkdir(parents=True, exist_ok=True)
    write_json(cfg_path, config)
    return path


def _with_policy_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the policy fields a ``config.json`` written before they existed lacks (``arch``,
    ``experts``, ``obs_norm``; issue 14) set to their defaults, so such a run (an MLP without observation
    normalisation) reopens as the same run. The policy sits at ``meta.policy`` (``run``) or ``policy`` (``train``)."""
    from policygradex.rl.policy import PolicyConfig

    defaults = {"arch": PolicyConfig.arch, "experts": PolicyConfig.experts, "obs_norm": PolicyConfig.obs_norm}

    def fill(policy: Any) -> Any:
        return {**defaults, **policy} if isinstance(policy, dict) else policy

    out = dict(config)
    if "policy" in out:
        out["policy"] = fill(out["policy"])
    if isinstance(out.get("meta"), dict) and "policy" in out["meta"]:
        out["meta"] = {**out["meta"], "policy": fill(out["meta"]["policy"])}
    return out


def config_path(directory: str | os.PathLike[str]) -> Path:
    """The ``config.json`` of a run directory."""
    return Path(directory) / CONFIG_FILE


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` of a run directory as plain data (a JSON object).

    Raises:
        PolicyGradExError: no ``config.json``, or one that is not a JSON object.
    """
    d = Path(directory)
    path = d / CONFIG_FILE
    if not path.is_file():
        raise PolicyGradExError(f"{str(d)!r} holds no run (no config.json); start one with `policygradex run --out {d}`")
    data = _read_json(path, f"delete {str(d)!r} or choose another --out")
    if not isinstance(data, dict):
        raise PolicyGradExError(f"{str(path)!r} is not a run configuration (a JSON object); delete {str(d)!r} or choose another --out")
    return data


def _differences(there: dict[str, Any], here: dict[str, Any], prefix: str = "") -> list[str]:
    """Each setting that differs between two normalised configs, as ``"section.key: <there> there, <here> here"``
    (sorted by dotted name; sections are followed into, a missing value shows as ``unset``)."""
    out = []
    for key in sorted(set(there) | set(here)):
        a, b = there.get(key), here.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        else:
            def show(v: Any) -> str:
                return "unset" if v is None else json.dumps(v)
            out.append(f"{prefix}{key}: {show(a)} there, {show(b)} here")
    return out


def _normalise(config: dict[str, Any]) -> dict[str, Any]:
    """A JSON round trip, so tuples and lists (and int/float keys) compare equal; keys whose value is
    None are dropped, so a run made before an optional field existed (``family.factory``, issue 16)
    still resumes."""
    def drop_none(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: drop_none(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [drop_none(x) for x in v]
        return v

    return typing.cast(dict[str, Any], drop_none(json.loads(json.dumps(config, sort_keys=True, default=str))))


def _read_json(path: Path, fix: str) -> Any:
    try:
        return read_json(path)
    except (ValueError, UnicodeDecodeError):
        raise PolicyGradExError(f"{str(path)!r} is corrupt (not valid JSON); {fix}") from None


class RunStore:
    """Typed, atomic access to the artifacts of one pipeline run directory.

    Args:
        directory: the run directory.
        family: the family's registry name (for the commands named in "missing" messages).
    """

    def __init__(self, directory: str | os.PathLike[str], family: str) -> None:
        self.dir = Path(directory)
        self.family = family

    # ---- commands that make each artifact ---------------------------------------------------------
    def command_for(self, stage: str) -> str:
        """The command that produces the outputs of ``stage`` in this directory."""
        sub = {
            "features": "features", "subsets": "estimate", "estimate": "estimate", "affinity": "estimate",
            "cluster": "cluster", "groups": "train-groups", "report": "report", "ground-truth": "ground-truth",
        }.get(stage)
        if sub is None:  # meta-training has no command of its own
            return f"policygradex run --family {self.family} --out {self.dir}"
        return f"policygradex {sub} --run {self.dir}"

    def require(self, path: Path, stage: str) -> Path:
        """``path`` if it exists, else a one-line error naming the command that writes it."""
        if not path.exists():
            raise PolicyGradExError(f"{path} is missing; run `{self.command_for(stage)}` first")
        return path

    def _json(self, path: Path, stage: str) -> Any:
        return _read_json(self.require(path, stage), f"delete it and rerun `{self.command_for(stage)}`")

    def _torch(self, path: Path, stage: str) -> Any:
        try:
            return torch.load(self.require(path, stage), map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError):
            raise PolicyGradExError(
                f"{str(path)!r} is corrupt; delete it and rerun `{self.command_for(stage)}`"
            ) from None

    def _npy(self, path: Path, stage: str) -> np.ndarray:
        try:
            return np.load(self.require(path, stage), allow_pickle=False)
        except (ValueError, OSError, EOFError):
            raise PolicyGradExError(f"{str(path)!r} is corrupt; delete it and rerun `{self.command_for(stage)}`") from None

    # ---- meta-policy ------------------------------------------------------------------------------
    @property
    def meta_dir(self) -> Path:
        """Where θ* is trained."""
        return self.dir / "meta"

    @property
    def meta_checkpoint(self) -> Path:
        """θ*'s checkpoint."""
        return policy_path(self.meta_dir)

    def load_meta_eval(self) -> dict[str, Any]:
        """θ*'s evaluation (``EvalResult.to_dict()`` and counters)."""
        return self.load_eval(self.meta_dir, "meta")

    @property
    def tag_path(self) -> Path:
        """TAG's lookahead averaged over the meta-training; written before θ*'s checkpoint."""
        return tag_path(self.meta_dir)

    def has_tag(self) -> bool:
        """Whether the meta-training recorded TAG's lookahead (runs made before the hook, or with
        ``meta.tag_every`` 0, did not)."""
        return self.tag_path.exists()

    def save_tag(self, record: TagRecord) -> None:
        """TAG's averaged lookahead of the meta-training."""
        save_tag(self.meta_dir, record)

    def load_tag(self, n: int) -> TagRecord:
        """TAG's averaged lookahead of the meta-training, checked for ``n`` tasks."""
        fix = (
            "it is written by the meta-training with --meta.tag-every K > 0; "
            f"start a new run with `policygradex run --family {self.family} --out NEW_DIR`"
        )
        return load_tag(self.meta_dir, n, fix)

    # ---- features ---------------------------------------------------------------------------------
    def feature_path(self, i: int) -> Path:
        """Task ``i``'s features."""
        return self.dir / "features" / f"task_{i}.pt"

    @property
    def projection_path(self) -> Path:
        """The projection's description; written last, so it marks the features stage as done."""
        return self.dir / "features" / "projection.json"

    def features_done(self) -> bool:
        """Whether the features stage completed (its completion mark exists)."""
        return self.projection_path.exists()

    def save_features(self, feats: dict[int, dict[str, torch.Tensor]], projection: dict[str, Any]) -> None:
        """Every task's features, then the projection record (the stage's completion mark)."""
        for i, f in feats.items():
            with atomic_path(self.feature_path(i)) as tmp:
                torch.save(f, tmp)
        write_json(self.projection_path, projection)

    def load_features(self, n: int) -> dict[int, dict[str, torch.Tensor]]:
        """The stored features of tasks 0..n−1 (grads [N, d], advantages [N], logp [N], obs, actions).

        Raises:
            PolicyGradExError: a missing, corrupt or inconsistent file (shapes, non-finite values).
        """
        d = int(self.load_projection()["d"])
        out = {}
        for i in range(n):
            path = self.feature_path(i)
            f = self._torch(path, "features")
            ok = isinstance(f, dict) and all(isinstance(f.get(k), torch.Tensor) for k in ("grads", "advantages", "logp"))
            if ok:
                g, a = f["grads"], f["advantages"]
                ok = g.ndim == 2 and g.shape[1] == d and a.shape == (g.shape[0],) and bool(torch.isfinite(g).all())
            if not ok:
                raise PolicyGradExError(
                    f"{str(path)!r} does not hold task {i}'s features (grads [N, {d}], advantages [N], logp [N]); "
                    f"delete the features/ folder and rerun `{self.command_for('features')}`"
                )
            out[i] = f
        return out

    def load_projection(self) -> dict[str, Any]:
        """``{"p", "d", "seed", "kind", "seconds"}``."""
        return self._json(self.projection_path, "features")

    # ---- subsets ----------------------------------------------------------------------------------
    @property
    def subsets_path(self) -> Path:
        """The sampled subsets."""
        return self.dir / "subsets.json"

    def save_subsets(self, subsets: Iterable[Any], min_pair_coverage: int) -> None:
        """Subsets (objects with ``index``, ``tasks``, ``seed``) and their smallest pair coverage."""
        write_json(self.subsets_path, {
            "subsets": [{"index": s.index, "tasks": list(s.tasks), "seed": s.seed} for s in subsets],
            "min_pair_coverage": int(min_pair_coverage),
        })

    def load_subsets(self) -> list[tuple[int, ...]]:
        """The subsets' task tuples, in index order."""
        data = self._json(self.subsets_path, "subsets")
        try:
            subsets = [tuple(int(i) for i in s["tasks"]) for s in data["subsets"]]
        except (KeyError, TypeError, ValueError):
            subsets = []
        if not subsets or any(not s for s in subsets):
            raise PolicyGradExError(
                f"{str(self.subsets_path)!r} holds no valid subsets; delete it and rerun `{self.command_for('subsets')}`"
            )
        return subsets

    # ---- surrogate fits ---------------------------------------------------------------------------
    @property
    def weights_path(self) -> Path:
        """The fitted w_S of every subset, [m, d]."""
        return self.dir / "estimate" / "weights.pt"

    @property
    def fit_path(self) -> Path:
        """The fits' record; written last, so it marks the fits as done."""
        return self.dir / "estimate" / "fit.json"

    def fits_done(self) -> bool:
        """Whether the surrogate fits completed."""
        return self.fit_path.exists() and self.weights_path.exists()

    def save_fits(self, weights: torch.Tensor, seconds: float) -> None:
        """The fitted weights, then their record."""
        with atomic_path(self.weights_path) as tmp:
            torch.save(weights, tmp)
        write_json(self.fit_path, {"seconds": seconds, "subsets": int(weights.shape[0])})

    def load_weights(self) -> torch.Tensor:
        """The fitted weights [m, d]."""
        self.require(self.fit_path, "estimate")
        w = self._torch(self.weights_path, "estimate")
        if not isinstance(w, torch.Tensor) or w.ndim != 2 or not bool(torch.isfinite(w).all()):
            raise PolicyGradExError(
                f"{str(self.weights_path)!r} is not a finite [m, d] tensor; delete it and rerun `{self.command_for('estimate')}`"
            )
        return w

    def fit_seconds(self) -> float:
        """Compute time of the fits."""
        return float(self._json(self.fit_path, "estimate")["seconds"])

    # ---- rollout-score chunks ---------------------------------------------------------------------
    def chunk_path(self, start: int) -> Path:
        """Scores of the distinct subsets from position ``start`` on."""
        return self.dir / "estimate" / "chunks" / f"chunk_{start:05d}.json"

    def save_chunk(self, start: int, rows: list[Any], seconds: float) -> None:
        """One chunk's ``(subset, task, score)`` rows and its compute time."""
        write_json(self.chunk_path(start), {"rows": [list(r) for r in rows], "seconds": seconds})

    def load_chunk(self, start: int) -> dict[str, Any]:
        """``{"rows": [[subset, task, score], ...], "seconds": s}``."""
        return self._json(self.chunk_path(start), "estimate")

    def chunk_seconds(self) -> float:
        """Compute time of every chunk scored so far."""
        chunks = sorted((self.dir / "estimate" / "chunks").glob("chunk_*.json"))
        return float(sum(_read_json(c, "delete it and rerun `policygradex estimate`")["seconds"] for c in chunks))

    # ---- score tables (estimate and ground truth) ---------------------------------------------------
    @property
    def scores_path(self) -> Path:
        """The estimate's score table."""
        return self.dir / "scores.jsonl"

    def save_scores(self, rows: Iterable[tuple[int, int, float]], mode: str, path: Path | None = None) -> None:
        """A score table: one line ``{"subset", "task", "score", "mode"}`` per (subset, task)."""
        lines = [json.dumps({"subset": l, "task": i, "score": v, "mode": mode}) for l, i, v in rows]
        write_text(path or self.scores_path, "\n".join(lines) + "\n")

    def load_scores(self, m: int, n: int, path: Path | None = None, stage: str = "estimate") -> np.ndarray:
        """A score table as scores [m, n], NaN outside each subset."""
        p = self.require(path or self.scores_path, stage)
        scores = np.full((m, n), np.nan)
        try:
            for line in p.read_text().splitlines():
                r = json.loads(line)
                scores[r["subset"], r["task"]] = r["score"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise PolicyGradExError(f"{str(p)!r} is corrupt; delete it and rerun `{self.command_for(stage)}`") from None
        return scores

    # ---- affinity and groups ------------------------------------------------------------------------
    @property
    def affinity_path(self) -> Path:
        """The affinity of the configured mode (the clustering's input); written last by its stage."""
        return self.dir / "affinity.npy"

    def affinity_mode_path(self, mode: str) -> Path:
        """The affinity of one mode (``task`` or ``aggregate``)."""
        return self.dir / f"affinity_{mode}.npy"

    @property
    def signal_path(self) -> Path:
        """Which tasks' scores carry no signal across subsets."""
        return self.dir / "signal.json"

    def save_signal(self, record: dict[str, Any]) -> None:
        """``{"no_signal": [tasks], "spread": [n], ...}``."""
        write_json(self.signal_path, record)

    def load_signal(self) -> dict[str, Any]:
        """The no-signal check of the estimate's scores."""
        return self._json(self.signal_path, "affinity")

    @property
    def coverage_path(self) -> Path:
        """How many subsets hold each pair."""
        return self.dir / "coverage.npy"

    def save_affinity(self, by_mode: dict[str, np.ndarray], coverage: np.ndarray, mode: str) -> None:
        """Every mode's affinity, the coverage, then the configured mode's (the completion mark)."""
        for m, U in by_mode.items():
            write_npy(self.affinity_mode_path(m), U)
        write_npy(self.coverage_path, coverage)
        write_npy(self.affinity_path, by_mode[mode])

    def load_affinity(self, n: int) -> np.ndarray:
        """The clustering's affinity [n, n]."""
        U = self._npy(self.affinity_path, "affinity")
        if U.shape != (n, n):
            raise PolicyGradExError(
                f"{str(self.affinity_path)!r} has shape {U.shape}, not ({n}, {n}); delete it and rerun `{self.command_for('affinity')}`"
            )
        return U

    def load_coverage(self) -> np.ndarray:
        """Pair coverage [n, n]."""
        return self._npy(self.coverage_path, "affinity")

    @property
    def groups_path(self) -> Path:
        """The partition."""
        return self.dir / "groups.json"

    def save_groups(self, record: dict[str, Any]) -> None:
        """The clustering's record (``groups``, ``method``, ``k``, ``objective``, ``affinity``)."""
        write_json(self.groups_path, record)

    def load_groups(self, n: int) -> list[list[int]]:
        """The partition of tasks 0..n−1."""
        data = self._json(self.groups_path, "cluster")
        groups = data.get("groups") if isinstance(data, dict) else None
        flat = sorted(i for g in groups or [] for i in g) if isinstance(groups, list) else None
        if flat != list(range(n)):
            raise PolicyGradExError(
                f"{str(self.groups_path)!r} is not a partition of the {n} tasks; delete it and rerun `{self.command_for('cluster')}`"
            )
        return [list(map(int, g)) for g in groups]  # type: ignore[union-attr]

    def load_metrics(self, directory: Path) -> list[dict[str, Any]]:
        """The lines of the ``metrics.jsonl`` of training into ``directory`` (empty where there is none,
        e.g. an imported θ*; unreadable lines are skipped: they only feed the report's curves)."""
        path = metrics_path(directory)
        out = []
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                out.append(row)
        return out

    def group_dir(self, g: int, baseline: str | None = None) -> Path:
        """Where group ``g``'s policy is trained: ``groups/<g>`` or ``baselines/<baseline>/<g>``."""
        return (self.dir / "groups" if baseline is None else self.dir / "baselines" / baseline) / str(g)

    def load_eval(self, directory: Path, stage: str = "groups") -> dict[str, Any]:
        """The evaluation of the policy trained in ``directory`` (``mean_return`` etc. by task)."""
        path = eval_path(directory)
        ev = self._json(path, stage)
        if not isinstance(ev, dict) or not isinstance(ev.get("mean_return"), dict):
            raise PolicyGradExError(
                f"{str(path)!r} is not an evaluation; delete {str(directory)!r} and rerun `{self.command_for(stage)}`"
            )
        return ev

    # ---- results and report -------------------------------------------------------------------------
    @property
    def results_path(self) -> Path:
        """Per-task scores of θ* and of the group policies."""
        return self.dir / "results.json"

    def save_results(self, results: dict[str, Any]) -> None:
        """``results.json``."""
        write_json(self.results_path, results)

    def load_results(self) -> dict[str, Any]:
        """``results.json``."""
        return self._json(self.results_path, "report")

    @property
    def report_path(self) -> Path:
        """The Markdown report."""
        return self.dir / "report.md"

    @property
    def report_html_path(self) -> Path:
        """The self-contained HTML report (plots embedded); written last by the report stage."""
        return self.dir / "report.html"

    def report_done(self) -> bool:
        """Whether the report stage completed (its last output exists)."""
        return self.results_path.exists() and self.report_path.exists() and self.report_html_path.exists()

    @property
    def timings_path(self) -> Path:
        """Wall-clock seconds of each stage, as last run."""
        return self.dir / "timings.json"

    def save_timing(self, stage: str, seconds: float) -> None:
        """Record the wall-clock of a stage that ran (other stages keep their record)."""
        write_json(self.timings_path, {**self.load_timings(), stage: float(seconds)})

    def load_timings(self) -> dict[str, float]:
        """``{stage: seconds}`` of every stage run so far (empty for runs made before issue 16)."""
        if not self.timings_path.exists():
            return {}
        data = _read_json(self.timings_path, "delete it (it only records times)")
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def figure_path(self, name: str) -> Path:
        """A figure of the report or of a study."""
        return self.dir / "figures" / f"{name}.png"

    # ---- studies ------------------------------------------------------------------------------------
    @property
    def approx_error_json(self) -> Path:
        """The approximation-error study's data."""
        return self.dir / "approx_error.json"

    @property
    def approx_error_md(self) -> Path:
        """The approximation-error study's table."""
        return self.dir / "approx_error.md"

    @property
    def approx_error_png(self) -> Path:
        """The approximation-error study's figure."""
        return self.figure_path("approx_error")

    @property
    def agreement_path(self) -> Path:
        """Estimate vs ground truth."""
        return self.dir / "agreement.json"

    @property
    def groupings_path(self) -> Path:
        """The grouping comparison."""
        return self.dir / "groupings.json"

    def ground_truth_dir(self, seed: int = 0) -> Path:
        """The ground-truth study with truth seed ``seed`` (a run directory of its own, with its
        ``config.json``): ``ground_truth/`` for seed 0, ``ground_truth_seed<s>/`` for the replicates
        that measure the noise ceiling."""
        return self.dir / ("ground_truth" if seed == 0 else f"ground_truth_seed{seed}")

    def truth_subset_path(self, l: int, seed: int = 0) -> Path:
        """The fine-tuned scores of subset ``l``."""
        return self.ground_truth_dir(seed) / "subsets" / f"subset_{l:05d}.json"

    def save_truth_subset(self, l: int, record: dict[str, Any], seed: int = 0) -> None:
        """The fine-tuned scores of subset ``l`` (its completion mark)."""
        write_json(self.truth_subset_path(l, seed), record)

    def load_truth_subset(self, l: int, seed: int = 0) -> dict[str, Any]:
        """``{"index", "tasks", "rows", "env_steps", "seconds", "relative_distance"}`` of subset ``l``."""
        return self._json(self.truth_subset_path(l, seed), "ground-truth")

    def truth_scores_path(self, seed: int = 0) -> Path:
        """The ground truth's score table."""
        return self.ground_truth_dir(seed) / "scores.jsonl"

    def save_truth(self, U: np.ndarray, coverage: np.ndarray, summary: dict[str, Any], seed: int = 0) -> None:
        """The true affinity, coverage, then the summary with the true groups (the completion mark)."""
        d = self.ground_truth_dir(seed)
        write_npy(d / "affinity.npy", U)
        write_npy(d / "coverage.npy", coverage)
        write_json(d / "groups.json", summary)

    def load_truth(self, seed: int = 0) -> dict[str, Any]:
        """The ground truth's summary (``groups``, ``compute_seconds``, ...)."""
        return self._json(self.ground_truth_dir(seed) / "groups.json", "ground-truth")

    def has_truth(self, seed: int = 0) -> bool:
        """Whether the ground truth with this seed is complete."""
        return (self.ground_truth_dir(seed) / "groups.json").exists()

    def load_truth_affinity(self, n: int, seed: int = 0) -> np.ndarray:
        """The true affinity [n, n]."""
        return self._npy(self.ground_truth_dir(seed) / "affinity.npy", "ground-truth")

    @property
    def noise_ceiling_path(self) -> Path:
        """The ground truth's agreement with itself."""
        return self.dir / "noise_ceiling.json"

    def groupings_file(self, budget: str) -> Path:
        """The grouping comparison under a budget rule."""
        return self.groupings_path if budget == "proportional" else self.dir / f"groupings_{budget}.json"

    def groupings_table_file(self, budget: str) -> Path:
        """The grouping comparison's Markdown table under a budget rule."""
        return self.groupings_file(budget).with_suffix(".md")

    # ---- the meta-RL protocol (issue 13) ------------------------------------------------------------
    @property
    def meta_rl_dir(self) -> Path:
        """The meta-RL protocol's folder (its own ``config.json``)."""
        return self.dir / "meta_rl"

    @property
    def meta_rl_test_features(self) -> Path:
        """θ*'s projected gradient features on the held-out tasks (for the estimate's assignment)."""
        return self.meta_rl_dir / "test_features.pt"

    def meta_rl_partitions(self, seed: int) -> Path:
        """The groupings of protocol seed ``seed``."""
        return self.meta_rl_dir / f"seed_{seed}" / "partitions.json"

    def meta_rl_group_dir(self, seed: int, grouping: str, g: int) -> Path:
        """Where group ``g`` of ``grouping`` is meta-trained and adapted, for protocol seed ``seed``."""
        return self.meta_rl_dir / f"seed_{seed}" / grouping / str(g)

    def meta_rl_result(self, seed: int, grouping: str, g: int) -> Path:
        """The adaptation record of one group policy (its completion mark)."""
        return self.meta_rl_group_dir(seed, grouping, g) / "result.json"

    def load_meta_rl_result(self, seed: int, grouping: str, g: int) -> dict[str, Any]:
        """One group policy's adaptation record."""
        path = self.meta_rl_result(seed, grouping, g)
        data = _read_json(path, f"delete {str(path.parent)!r} and rerun `policygradex meta-rl --run {self.dir}`")
        if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
            raise PolicyGradExError(
                f"{str(path)!r} is not an adaptation record; delete {str(path.parent)!r} and rerun "
                f"`policygradex meta-rl --run {self.dir}`"
            )
        return data

    @property
    def meta_rl_json(self) -> Path:
        """The protocol's results (no wall-clocks: a seed fixes it byte for byte)."""
        return self.dir / "meta_rl.json"

    @property
    def meta_rl_md(self) -> Path:
        """The protocol's tables beside the paper's numbers."""
        return self.dir / "meta_rl.md"
