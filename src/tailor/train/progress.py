"""How training reports progress: a small Reporter protocol and its terminal and silent implementations.

The training loops call only these methods, so the same loop feeds a rich progress bar in the CLI, a list
of events in tests, and (in the service) job events in the database.
"""

from __future__ import annotations

import time
from typing import Protocol


class Reporter(Protocol):
    """Receives what a training run has to say."""

    def message(self, text: str, **data) -> None:
        """A human-readable event (a choice made, a stage started), with structured ``data``."""

    def start(self, description: str, total: int) -> None:
        """A stage of ``total`` steps begins."""

    def advance(self, steps: int = 1, *, step: int | None = None, **stats) -> None:
        """``steps`` more steps are done (``step``: the loop's own count after them, which a resumed run
        continues from its checkpoint); ``stats`` (loss, items/s) update the display."""

    def metrics(self, step: int, data: dict) -> None:
        """Metrics at ``step`` (per-epoch validation scores, losses)."""

    def checkpoint(self, step: int, metrics: dict) -> None:
        """A resumable checkpoint was written after ``step`` steps; ``metrics`` are its validation scores."""

    def finish(self) -> None:
        """The current stage ends."""


class RecordingReporter:
    """Keeps every message and metric in memory (used by tests and the Python API)."""

    def __init__(self):
        self.messages: list[tuple[str, dict]] = []
        self.metric_events: list[tuple[int, dict]] = []
        self.checkpoints: list[tuple[int, dict]] = []

    def message(self, text: str, **data) -> None:
        self.messages.append((text, data))

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1, *, step: int | None = None, **stats) -> None:
        pass

    def metrics(self, step: int, data: dict) -> None:
        self.metric_events.append((step, dict(data)))

    def checkpoint(self, step: int, metrics: dict) -> None:
        self.checkpoints.append((step, dict(metrics)))

    def finish(self) -> None:
        pass


class ConsoleReporter(RecordingReporter):
    """Rich progress bars and messages on stderr, so stdout stays clean for ``--json``."""

    def __init__(self, quiet: bool = False):
        super().__init__()
        from rich.console import Console

        self.console = Console(stderr=True, quiet=quiet)
        self._progress = None
        self._task = None
        self._t0 = 0.0

    def message(self, text: str, **data) -> None:
        super().message(text, **data)
        self.console.print(f"[bold cyan]›[/] {text}")

    def start(self, description: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.finish()
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                  console=self.console, transient=False)
        self._task = self._progress.add_task(description, total=total, stats="")
        self._progress.start()
        self._t0 = time.perf_counter()

    def advance(self, steps: int = 1, *, step: int | None = None, **stats) -> None:
        if self._progress is None:
            return
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items())
        self._progress.update(self._task, advance=steps, stats=shown)

    def metrics(self, step: int, data: dict) -> None:
        super().metrics(step, data)
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in data.items())
        self.console.print(f"  [dim]{shown}[/]")

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

