"""The one metrics interface: namespaced keys (``train/``, ``eval/``, ``estimate/``) to a JSONL file
and, by default, TensorBoard (imported lazily)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Writes ``{"step": s, key: value, ...}`` lines to ``metrics.jsonl`` and TensorBoard scalars.

    Args:
        directory: where ``metrics.jsonl`` and the TensorBoard ``tb/`` folder go; None logs nothing.
        tensorboard: also write TensorBoard events.
    """

    def __init__(self, directory: str | os.PathLike[str] | None, tensorboard: bool = True) -> None:
        self._file = None
        self._tb: Any = None
        if directory is None:
            return
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        # A restarted stage starts its log afresh: its results are recomputed from scratch.
        self._file = open(path / "metrics.jsonl", "w")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(path / "tb"))

    def log(self, step: int, values: dict[str, float]) -> None:
        """Record scalar ``values`` at ``step``."""
        if self._file is not None:
            self._file.write(json.dumps({"step": step, **values}) + "\n")
            self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        """Flush and close."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
