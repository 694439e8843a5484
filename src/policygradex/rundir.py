"""Run directories: one per command, holding the resolved config and that command's artifacts.

A directory belongs to one run, identified by its ``config.json``. Reusing it with the same
configuration resumes (completed artifacts are kept); reusing it with another configuration, or
pointing at a folder with unrelated files, is refused so no run overwrites another.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from policygradex.errors import PolicyGradExError
from policygradex.io import read_json, write_json

CONFIG_FILE = "config.json"


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
        try:
            existing = read_json(cfg_path)
        except ValueError:
            raise PolicyGradExError(
                f"{str(cfg_path)!r} is not valid JSON; delete {str(path)!r} or choose another --out"
            ) from None
        if _normalise(existing) != _normalise(config):
            diff = sorted(k for k in set(existing) | set(config) if existing.get(k) != _normalise(config).get(k))
            raise PolicyGradExError(
                f"output directory {str(path)!r} holds another run (its config differs in: {', '.join(diff) or 'values'}); "
                "choose a new --out or delete that directory"
            )
        return path
    if path.exists() and any(not p.name.startswith(".") for p in path.iterdir()):
        raise PolicyGradExError(
            f"output directory {str(path)!r} is not empty and holds no policygradex run; choose a new --out"
        )
    path.mkdir(parents=True, exist_ok=True)
    write_json(cfg_path, config)
    return path


def _normalise(config: dict[str, Any]) -> dict[str, Any]:
    """A JSON round trip, so tuples and lists (and int/float keys) compare equal."""
    import json

    return json.loads(json.dumps(config, sort_keys=True, default=str))
