"""How every command ends when something goes wrong.

* An :class:`~oxunet.errors.OxunetError` (a problem the user can fix) is one line on stderr,
  ``Error: <message naming the file or case>``, and exit status :data:`EXIT_USER_ERROR` (1).
* Any other exception is a bug or an environment failure: one line naming the exception and
  the log file that holds its full traceback, and exit status :data:`EXIT_INTERNAL_ERROR` (70,
  ``EX_SOFTWARE`` of sysexits.h; click's own usage errors keep status 2).

Logs go to ``$OXUNET_LOG_DIR``, else ``~/.cache/oxunet/logs``, else the temporary folder.
"""

from __future__ import annotations

import datetime
import functools
import os
import tempfile
import traceback
from pathlib import Path

import click

from ..errors import OxunetError

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 70


class InternalError(click.ClickException):
    """An unexpected exception, reported in one line with the path of its traceback log."""

    exit_code = EXIT_INTERNAL_ERROR

    def show(self, file=None) -> None:
        click.echo(self.format_message(), err=True)


def log_dir() -> Path:
    env = os.environ.get("OXUNET_LOG_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path.home() / ".cache" / "oxunet" / "logs", Path(tempfile.gettempdir()) / "oxunet-logs"]
    for d in candidates:
        try:
            d.mkdir(parents=True, exist_ok=True)
            return d
        except OSError:
            continue
    return Path(tempfile.gettempdir())


def write_traceback_log(command: str, exc: BaseException) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = log_dir() / f"oxunet-{command.replace(' ', '-')}-{stamp}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    path.write_text(f"oxunet {command} failed\n\n{text}")
    return path


def one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return msg if msg else type(exc).__name__


def guarded(command: str, callback):
    """`callback` with oxunet's error contract applied (see the module docs)."""

    @functools.wraps(callback)
    def run(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except OxunetError as exc:
            raise click.ClickException(one_line(exc)) from None
        except Exception as exc:
            path = write_traceback_log(command, exc)
            raise InternalError(
                f"oxunet {command}: unexpected {type(exc).__name__}: {one_line(exc)} "
                f"(full traceback in {path}; exit status {EXIT_INTERNAL_ERROR})") from None

    setattr(run, "__oxunet_guarded__", True)  # noqa: B010 - an attribute mypy does not know
    return run


def guard_commands(group: click.Group, prefix: str = "") -> None:
    """Applies :func:`guarded` to every command of `group`, sub-groups included."""
    for name, cmd in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            guard_commands(cmd, f"{path} ")
        if cmd.callback is not None and not getattr(cmd.callback, "__oxunet_guarded__", False):
            cmd.callback = guarded(path, cmd.callback)
