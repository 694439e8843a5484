"""The layer order of design.md, enforced: a module imports only from its own layer or lower ones."""

from __future__ import annotations

import ast
from pathlib import Path

import policygradex

# Lowest first. Within a layer, modules may import each other (without cycles).
LAYERS: list[set[str]] = [
    {"errors", "io", "threads"},  # utilities
    {"tasks"},  # task families on Gymnasium envs
    {"rl", "metrics"},  # networks, rollouts, PPO, evaluation, checkpoints
    {"gradex", "grouping"},  # the estimator; partitions from an affinity
    {"analysis"},  # approximation error, agreement, statistics
    {"execute", "config", "rundir", "training", "report"},  # executors, typed config, the store, writers
    {"pipeline"},  # stages
    {"studies", "meta_rl"},  # studies on a finished run; the meta-RL protocol (issue 13)
    {"cli", "console"},  # the command line and what it shows while it works
]
ROOT = Path(policygradex.__file__).parent


def _component(module: Path) -> str:
    rel = module.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def _layer(component: str) -> int:
    for i, layer in enumerate(LAYERS):
        if component in layer:
            return i
    raise AssertionError(f"{component!r} is in no layer of tests/test_layers.py; add it where it belongs")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported policygradex component) for every import in ``path``, inside functions too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "policygradex":
                names = [f"policygradex.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "policygradex" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


def test_every_module_imports_only_downward():
    modules = [p for p in ROOT.rglob("*.py") if p.name != "__main__.py" and p != ROOT / "__init__.py"]
    assert len(modules) > 30
    violations = []
    for path in modules:
        own = _component(path)
        for line, target in _imports(path):
            if _layer(target) > _layer(own):
                violations.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {target}")
    assert not violations, "imports from a higher layer:\n" + "\n".join(violations)


def test_the_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from policygradex.pipeline import run\n")
    assert _imports(bad) == [(2, "pipeline")]
    assert _layer("pipeline") > _layer("rl")


def test_no_artifact_name_outside_the_store():
    """File names of the run directory are spelled only in rundir.py (the store): no other module builds
    a path from one (messages and help texts, which have spaces, may name files for the reader)."""
    names = ["config.json", "policy.pt", "eval.json", "metrics.jsonl", "train_state.pt", "projection.json",
             "subsets.json", "weights.pt", "fit.json", "scores.jsonl", "affinity.npy", "coverage.npy",
             "groups.json", "results.json", "report.md", "agreement.json", "groupings.json", "approx_error"]
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.name == "rundir.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and " " not in node.value):
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {name!r}" for name in names if name in node.value]
    assert not offenders, "artifact names outside rundir.py:\n" + "\n".join(offenders)
