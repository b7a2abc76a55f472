"""The ``adaptc`` command line: a thin layer over the public API (commands in :mod:`.build`, :mod:`.catalog`,
:mod:`.inspect`, :mod:`.history`, :mod:`.dashboard`; this module holds the app, the shared helpers and the exit
codes).

Exit codes: 0 ok; 2 bad input (one-line message, no traceback unless ``--debug``), a model that no format
can export, or no artifact that meets the budgets; 3 partial build (some formats failed, the others were
emitted; one line names each failed format and op); 4 ``compare --fail-on-regression`` (or
``--against-history``) found a regression;
1 internal failure; 130 interrupted (finished work is kept; rerunning resumes).
"""

from __future__ import annotations

import errno
import logging
import sys
import traceback
from typing import Any

import click
import typer

from ..core import __version__
from ..errors import AdaptcError

try:  # typer >= 0.25 vendors its own click: its exceptions are separate classes from click's
    from typer._click.exceptions import ClickException as _TyperClickException
    from typer.exceptions import Abort as _TyperAbort
    from typer.exceptions import Exit as _TyperExit
except ImportError:  # pragma: no cover - older typer re-exports click's
    _TyperClickException, _TyperAbort, _TyperExit = click.ClickException, click.exceptions.Abort, click.exceptions.Exit  # type: ignore[misc, assignment]

_EXIT = (click.exceptions.Exit, _TyperExit)
_ABORT = (click.exceptions.Abort, _TyperAbort)
_USAGE = (click.ClickException, _TyperClickException)

app = typer.Typer(
    name="adaptc",
    help="Hardware-adaptive model compiler: derive device-sized students from a PyTorch teacher and emit "
    "measured ONNX / TFLite / CoreML artifacts with a report.\n\n"
    "Exit codes: 0 ok; 2 bad input, a model no format can export, or no artifact meets the budgets; "
    "3 partial build (some formats failed, the rest were emitted and the report says which); "
    "4 compare --fail-on-regression found a regression; 1 internal error; 130 interrupted (a rerun resumes).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state: dict[str, Any] = {"quiet": False, "verbose": 0, "debug": False}


def _version_cb(value: bool) -> None:
    if value:
        typer.echo(f"adaptc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_cb, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (repeat for debug logs)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the final result."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    _state.update(quiet=quiet, verbose=verbose, debug=debug)
    level = (
        logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        # torchao's import-time notes about optional CUDA kernels (mxfp8, cutlass, triton) do not concern a
        # CPU build; -v shows them
        logging.getLogger("torchao").setLevel(logging.ERROR)
        logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao's enum registration notes


def _reporter():
    """Progress for a command: none with --quiet, live bars on a terminal, one plain line per event otherwise (stderr
    redirected to a file or a pipe: a log shows each epoch as it ends, not only the finished steps)."""
    from ..core.progress import NullReporter, PlainReporter, RichReporter

    if _state["quiet"]:
        return NullReporter()
    return RichReporter() if _isatty(sys.stderr) else PlainReporter()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _console(stderr: bool = False):
    from rich.console import Console

    # Piped output (CI logs, `| less`) gets a wide console instead of rich's 80-column default.
    stream = sys.stderr if stderr else sys.stdout
    return Console(width=None if stream.isatty() else 200, soft_wrap=False, stderr=stderr)


def _task_options(items: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` items of --task-option as a dict (the task's factory converts the values)."""
    opts: dict[str, str] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise AdaptcError(f"--task-option wants KEY=VALUE, e.g. max_length=64; got {item!r}")
        opts[key.strip()] = value.strip()
    return opts


def _parse_formats(formats: str | None) -> list[str] | None:
    if not formats:
        return None
    return [f.strip() for f in formats.split(",") if f.strip()]


def _maybe_live(rep: Any):
    import contextlib

    return rep if hasattr(rep, "__enter__") else contextlib.nullcontext()


# the commands register on `app` in this order (the order of `adaptc --help`)
from . import build as _build_cmds  # noqa: E402,F401
from . import catalog as _catalog_cmds  # noqa: E402,F401
from . import dashboard as _dashboard_cmds  # noqa: E402,F401
from . import history as _history_cmds  # noqa: E402,F401
from . import inspect as _inspect_cmds  # noqa: E402,F401

# ------------------------------------------------------------------------------------------------ main
#: exit code of an interrupted run (Ctrl-C); finished work is kept and a rerun resumes
EXIT_INTERRUPTED = 130
_INTERRUPTED = "adaptc: interrupted; finished work is kept and a rerun resumes"


def _from_ctrl_c(e: BaseException) -> bool:
    """Whether ``e`` is, or was raised while handling, a KeyboardInterrupt (click turns Ctrl-C into ``Abort``, typer
    into ``Exit(130)``, each raised from it)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _interrupted() -> int:
    click.echo(_INTERRUPTED, err=True)
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=argv, prog_name="adaptc", standalone_mode=False)
        # typer (>= 0.25) returns 130 for a Ctrl-C in non-standalone mode; no command returns 130 itself
        return _interrupted() if rv == EXIT_INTERRUPTED else rv if isinstance(rv, int) else 0
    except _EXIT as e:
        code = int(getattr(e, "exit_code", 0) or 0)
        return _interrupted() if _from_ctrl_c(e) else code
    except _ABORT as e:  # click: Ctrl-C is an Abort raised from the KeyboardInterrupt; else a declined prompt
        if _from_ctrl_c(e):
            return _interrupted()
        click.echo("adaptc: aborted", err=True)
        return 130
    except _USAGE as e:  # one line, as every other error: what is wrong and where the help is
        ctx = getattr(e, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"adaptc: error: {_one_line(e.format_message())}{where}", err=True)
        return int(getattr(e, "exit_code", 2) or 2)
    except AdaptcError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"adaptc: error: {_one_line(str(e))}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except OSError as e:
        if e.errno not in _NO_ROOM:
            return _internal(e, debug)
        if debug:
            traceback.print_exc()
        where = f" writing {e.filename}" if e.filename else ""
        click.echo(
            f"adaptc: error: {_one_line(f'{e.strerror or e}{where}')} (free some space, or write elsewhere)", err=True
        )
        return 2
    except Exception as e:
        return _internal(e, debug)


def _one_line(text: str) -> str:
    """A message as one printable line: newlines and other control characters (a YAML key can hold any) escaped as
    Python writes them (``\\n``, ``\\x1c``)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


#: a full disk, a quota, a file-size limit, a read-only file system: the user's to fix (exit 2)
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _internal(e: Exception, debug: bool) -> int:  # internal failure
    if debug:
        traceback.print_exc()
    msg = _one_line(str(e).strip().splitlines()[0]) if str(e).strip() else ""
    click.echo(f"adaptc: internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)", err=True)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
