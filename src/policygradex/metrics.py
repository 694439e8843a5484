"""The one metrics interface: namespaced keys (``train/``, ``eval/``, ``estimate/``) to a JSONL file
and, by default, TensorBoard (imported lazily)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Writes ``{"step": s, key: value, ...}`` lines to a JSONL file and TensorBoard scalars.

    Args:
        path: the JSONL file (started afresh); None logs nothing.
        tensorboard_dir: where TensorBoard events go; None writes none.
    """

    def __init__(self, path: str | os.PathLike[str] | None, tensorboard_dir: str | os.PathLike[str] | None = None) -> None:
        self._file = None
        self._tb: Any = None
        if path is None:
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A restarted training starts its log afresh (a resumed one first re-logs what its state holds).
        self._file = open(path, "w")
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(tensorboard_dir))

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
