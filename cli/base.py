"""What every seco command shares: logging set-up, -v/-q (before or after the subcommand), and
errors as one-line messages with one exit code per meaning (``seco_data.errors.EXIT_CODES``)."""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from seco_data.errors import BROKEN_PIPE, INTERNAL_ERROR, INTERRUPTED, SecoError, disk_full, is_disk_full, redact


def configure_logging(verbosity: int) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # other ranks of a distributed run: errors only
        verbosity = min(verbosity, -1)
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if verbosity < -1:
        level = logging.CRITICAL
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)


def _redact_record(record: logging.LogRecord) -> bool:
    """Passwords in URLs never reach the log (``https://u:pw@host`` -> ``https://***@host``)."""
    text = record.getMessage()
    clean = redact(text)
    if clean != text:
        record.msg, record.args = clean, None
    return True


def verbosity(ctx: click.Context) -> int:
    """-v minus -q, counted on the group and on the command."""
    return (ctx.find_root().obj or {}).get("verbosity", 0)


def quiet(ctx: click.Context) -> bool:
    return verbosity(ctx) < 0


def _verbosity_params() -> list[click.Option]:
    return [click.Option(["-v", "--verbose"], count=True, help="More output (-v info, -vv debug and tracebacks)."),
            click.Option(["-q", "--quiet"], count=True, help="Less output (errors only).")]


class SecoCommand(click.Command):
    """A command that also takes -v/-q after its name (``seco-data sample -v ...``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.params.extend(_verbosity_params())

    def invoke(self, ctx: click.Context):
        more = ctx.params.pop("verbose", 0) - ctx.params.pop("quiet", 0)
        if more:
            root = ctx.find_root()
            root.obj = {**(root.obj or {}), "verbosity": verbosity(ctx) + more}
            configure_logging(verbosity(ctx))
        return super().invoke(ctx)


class SecoGroup(click.Group):
    """A group whose commands turn seco's errors into ``Error: ... (hint: ...)`` and an exit code."""

    command_class = SecoCommand

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SecoError as e:
            _error(e.one_line())
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            _error("interrupted (hint: rerun the same command to resume)")
            ctx.exit(INTERRUPTED)
        except BrokenPipeError:
            # the reader went away (`seco-data recipe list | head -1`): stop quietly; stdout goes to
            # /dev/null so that the interpreter's final flush does not complain either
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(BROKEN_PIPE)
        except Exception as e:  # noqa: BLE001 - last resort: never a bare traceback
            if verbosity(ctx) >= 2:
                traceback.print_exc()
            if is_disk_full(e):
                err = disk_full(getattr(e, "filename", None) or "the output", e)
                _error(err.one_line())
                ctx.exit(err.exit_code)
            msg = redact(" ".join(str(e).split())) or type(e).__name__
            _error(f"internal error: {type(e).__name__}: {msg} "
                   "(hint: rerun with -vv for the traceback and report it; collected data is safe to resume)")
            ctx.exit(INTERNAL_ERROR)


SecoGroup.group_class = SecoGroup


def _error(line: str) -> None:
    try:
        click.echo(f"Error: {line}", err=True)
    except OSError:  # stderr is gone too
        pass


def root_group(version: str, prog: str):
    """The top-level group of a seco program (``seco-data``, ``seco-train``)."""

    def decorate(f):
        @click.group(cls=SecoGroup, context_settings={"help_option_names": ["-h", "--help"]})
        @click.version_option(version, prog_name=prog)
        @click.option("-v", "--verbose", count=True, help="More output (-v info, -vv debug and tracebacks).")
        @click.option("-q", "--quiet", count=True, help="Less output (errors only).")
        @click.pass_context
        def group(ctx, verbose, quiet):
            ctx.obj = {"verbosity": verbose - quiet}
            configure_logging(verbose - quiet)

        group.__doc__ = f.__doc__
        group.help = f.__doc__
        group.name = prog
        return group

    return decorate
