"""The ``hiu-data`` command line: a Typer app assembled from the modules of this package.

Every module ``hiu_cli.<group>`` that defines ``register(app)`` adds its commands; each
command is a thin wrapper over a library function. One error handler: errors a user can
cause (:class:`hiu_data.errors.HiuError`, missing files) print one line and exit 1;
``HIU_DEBUG=1`` shows the traceback instead. A command stopped by Ctrl-C says so in one line
(what it kept and how to go on, where it kept something: :class:`hiu_data.errors.Interrupted`)
and exits 130. In a ``torchrun`` group rank 0 prints what all processes meet alike; the others
log errors only and exit 1 quietly on :class:`hiu_data.errors.ReportedElsewhere`, and with status
0 on a usage error (a wrong option), which rank 0 prints and exits with.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import pkgutil
import signal
import sys

import typer
from rich.console import Console

import hiu_cli
from hiu_cli._common import other_process
from hiu_data.errors import HiuError, Interrupted, ReportedElsewhere

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
# The click exceptions typer raises: those of its own copy of click in recent versions, of the
# click package in older ones. Its BadParameter comes from that module.
_click_exceptions = importlib.import_module(typer.BadParameter.__module__)

app = typer.Typer(
    name="hiu-data",
    help="hiu: hand datasets to one schema, training targets, the HIU-DMTL model, pseudo-labels and review.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        from hiu_data.io.parquet import tool_version

        typer.echo(f"hiu {tool_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    level = logging.INFO if verbose else logging.WARNING
    if other_process():
        level = logging.ERROR  # rank 0 logs what all processes of a torchrun group do alike
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(hiu_cli.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "main":
            continue
        module = importlib.import_module(f"hiu_cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


def _one_line_paragraphs(text: str) -> str:
    """``text`` with each blank-line separated paragraph on one line."""
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines())
                       for paragraph in inspect.cleandoc(text).split("\n\n"))


def _reflow_help(group: typer.Typer) -> None:
    """Let the terminal wrap every command's help: typer's rich help keeps a docstring's single
    line breaks, which cut the source's 100-column paragraphs into ragged half-lines."""
    for command in group.registered_commands:
        text = command.help or inspect.getdoc(command.callback)
        if text:
            command.help = _one_line_paragraphs(text)
    for sub in group.registered_groups:
        _reflow_help(sub.typer_instance)


_register_all()
_reflow_help(app)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename}: not found"
    if isinstance(exc, PermissionError) and exc.filename:
        return f"{exc.filename}: permission denied"
    if isinstance(exc, FileExistsError) and exc.filename:
        return f"{exc.filename}: exists and is not a folder"
    if isinstance(exc, NotADirectoryError) and exc.filename:
        return f"{exc.filename}: a folder on this path is a file"
    if isinstance(exc, IsADirectoryError) and exc.filename:
        return f"{exc.filename}: is a folder, expected a file"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _run_other_process(argv: list[str] | None) -> int:
    """Run the app in a process of a ``torchrun`` group other than rank 0; returns the exit code.

    A usage error (an unknown option, a value out of range) comes from the arguments, which
    every process of the group has alike: rank 0 prints it and exits with its status; this
    process exits with 0. torchrun stops the whole group at the first process that fails, so a
    failing exit here, when it came first (rank 0 still importing on a loaded machine), would
    have rank 0 killed before it printed anything; the group's status is rank 0's failure either
    way. Standalone mode would print the error here too; this is the same run without it.
    """
    try:
        result = app(args=argv, prog_name="hiu-data", standalone_mode=False)
    except _click_exceptions.UsageError:
        return 0
    except _click_exceptions.ClickException as e:  # not from the arguments alone: said where it was met
        e.show()
        return e.exit_code
    except typer.Abort:
        return 1
    # Without standalone mode a typer.Exit (and a Ctrl-C, as 130) comes back as its status.
    return result if isinstance(result, int) else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    debug = os.environ.get("HIU_DEBUG", "") not in ("", "0")
    try:
        if other_process():
            return _run_other_process(argv)
        # Standalone mode handles usage errors (exit 2) and --help itself and ends in SystemExit.
        app(args=argv, prog_name="hiu-data")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == 128 + signal.SIGINT:  # typer turns a Ctrl-C inside a command into this exit
            err_console.print("interrupted")
        return code
    except (HiuError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        if debug:
            raise
        err_console.print(f"error: {_one_line(e)}", markup=False)
        return 1
    except ReportedElsewhere:
        return 1
    except Interrupted as e:
        if e.is_main:
            err_console.print(f"interrupted: {e}", markup=False)
        return e.exit_code
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
