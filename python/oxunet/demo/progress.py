"""What the demo shows while it runs: rich progress on a terminal, plain lines elsewhere.

Both reporters get the same calls: ``step(name)`` when a step starts, ``epoch(summary)`` after each
training epoch, ``close()`` at the end. On a terminal each step is a spinner line that turns into
a tick with its time, and training is a bar over the epochs whose text carries the last loss and
pseudo-Dice per label. Without a terminal (CI logs, pipes) every step and every epoch is one line,
so a log shows how far a run got.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from rich.progress import TaskID


def _dice_text(names: Sequence[str], dice: Sequence[float]) -> str:
    return " ".join(f"{n} {d:.3f}" for n, d in zip(names, dice))


class PlainProgress:
    """One line per step and per epoch through ``log``."""

    def __init__(self, log: Callable[[str], None] = print):
        self.log = log
        self.label_names: Sequence[str] = ()
        self.epochs = 0

    def step(self, name: str, epochs: int = 0) -> None:
        self.epochs = epochs
        self.log(f"[demo] {name} ...")

    def epoch(self, summary) -> None:
        self.log(f"[demo] epoch {summary.epoch + 1}/{self.epochs}: train loss {summary.train_loss:.4f}, "
                 f"val loss {summary.val_loss:.4f}, pseudo-Dice {_dice_text(self.label_names, summary.pseudo_dice)} "
                 f"({summary.seconds:.1f} s)")

    def close(self) -> None:
        pass


class RichProgress:
    """A live rich display on ``console`` (stderr): one line per step, a bar for the epochs."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(finished_text="[green]✓"), TextColumn("{task.description}"),
                                 BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=console, transient=False)
        self.progress.start()
        self.task: TaskID | None = None  # the current step's
        self.label_names: Sequence[str] = ()
        self._name = self._last = ""
        self._t0 = 0.0

    def _finish(self) -> None:
        if self.task is not None:
            t = self.progress.tasks[self.task]
            took = time.perf_counter() - self._t0
            self.progress.update(self.task, completed=t.total, description=f"{self._name}{self._last} ({took:.0f} s)")
            self.progress.stop_task(self.task)

    def step(self, name: str, epochs: int = 0) -> None:
        self._finish()
        self._name, self._last, self._t0 = name, "", time.perf_counter()
        self.task = self.progress.add_task(name, total=epochs or 1)

    def epoch(self, summary) -> None:
        self._last = f": loss {summary.train_loss:.3f}, pseudo-Dice {_dice_text(self.label_names, summary.pseudo_dice)}"
        if self.task is not None:  # epochs come within a step
            self.progress.update(self.task, advance=1, description=self._name + self._last)

    def close(self) -> None:
        self._finish()
        self.progress.stop()
