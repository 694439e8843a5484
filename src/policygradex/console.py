"""What a command shows while it works (issue 16): tqdm bars on a terminal, one plain line per event
elsewhere (a log file, CI), and the library's log records (stage started / done in N s / skipped) as
lines on stdout in both.

The library never prints: the pipeline reports progress through a ``progress(stage, done, total)``
callback and logs stage events to the ``policygradex`` logger. :class:`Console` is both the callback
and the logging handler, so bars and lines never interleave.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any, Literal

LogFormat = Literal["auto", "tty", "plain"]

LOGGER = "policygradex"


def is_plain(fmt: LogFormat, stream: IO[str] | None = None) -> bool:
    """Whether ``fmt`` means plain lines: 'plain', or 'auto' where ``stream`` (stderr, where bars would go)
    is not a terminal."""
    if fmt != "auto":
        return fmt == "plain"
    stream = stream if stream is not None else sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


class _PlainProgress:
    """One line each time a stage passes another tenth of its work, with its elapsed time and, once
    a step finished in this process, the time left. Nothing is repeated, nothing is redrawn."""

    def __init__(self, stage: str, done: int, total: int, out: IO[str]) -> None:
        self.stage, self.total, self.out = stage, total, out
        self.start_done, self.start = done, time.monotonic()
        self.tenth = self._tenth(done)  # work resumed from an earlier run is not announced again

    def _tenth(self, done: int) -> int:
        return 10 * done // self.total if self.total else 10

    def update(self, done: int, total: int, note: str = "") -> None:
        self.total = total
        tenth = self._tenth(done)
        if tenth <= self.tenth:
            return
        self.tenth = tenth
        elapsed = time.monotonic() - self.start
        rate = (done - self.start_done) / elapsed if elapsed > 0 else 0.0
        left = f", about {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
        print(f"{self.stage}: {done}/{total} ({100 * done // max(total, 1)}%) after {elapsed:.0f} s{left}{note}",
              file=self.out, flush=True)


class Console(logging.Handler):
    """Progress bars or plain progress lines, and the ``policygradex`` log records, for one command.

    Use as a context manager: it attaches itself to the ``policygradex`` logger and detaches (closing
    every bar) on exit. Call it as ``console(stage, done, total)`` to report progress.

    Args:
        plain: plain lines instead of tqdm bars.
        out: where lines go (stdout by default); bars go to stderr.
    """

    def __init__(self, plain: bool, out: IO[str] | None = None) -> None:
        super().__init__(logging.INFO)
        self.plain = plain
        self.out = out if out is not None else sys.stdout
        self._bars: dict[str, Any] = {}
        self._lines: dict[str, _PlainProgress] = {}
        self._logger = logging.getLogger(LOGGER)
        self._level = self._logger.level
        self.started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the console was made (the command's wall-clock so far)."""
        return time.monotonic() - self.started

    # ---- progress ------------------------------------------------------------------------------------
    def __call__(self, stage: str, done: int, total: int, note: str = "") -> None:
        if self.plain:
            line = self._lines.get(stage)
            if line is None:
                self._lines[stage] = _PlainProgress(stage, done, total, self.out)
            else:
                line.update(done, total, note)
            return
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:  # started at the work already done, so the rate counts only this process's work
            bar = self._bars[stage] = tqdm(total=total, initial=done, desc=stage, file=sys.stderr, dynamic_ncols=True)
        bar.total = total
        if note:
            bar.set_postfix_str(note.strip(" ,"), refresh=False)
        bar.update(done - bar.n)

    def finish(self, stage: str) -> None:
        """Close the bar (or forget the plain progress) of ``stage``."""
        self._lines.pop(stage, None)
        bar = self._bars.pop(stage, None)
        if bar is not None:
            bar.close()

    # ---- log records -----------------------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "stage", None)
        event = getattr(record, "event", None)
        if stage is not None and event in ("done", "skipped"):
            self.finish(stage)
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.write(f"warning: {text}", sys.stderr)
        else:
            self.write(text)

    def write(self, text: str, stream: IO[str] | None = None) -> None:
        """Print a line without breaking the bars."""
        stream = stream or self.out
        if self.plain or not self._bars:
            print(text, file=stream, flush=True)
        else:
            from tqdm import tqdm

            tqdm.write(text, file=stream)

    def __enter__(self) -> Console:
        self._logger.addHandler(self)
        if self._logger.level == logging.NOTSET or self._logger.level > logging.INFO:
            self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        for stage in list(self._bars):
            self.finish(stage)
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

