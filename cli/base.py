"""What every seco command shares: logging set-up, -v/-q, and errors as one-line messages."""

from __future__ import annotations

import logging
import sys
import traceback

import click

from seco_data.errors import SecoError

INTERNAL_ERROR = 70


def configure_logging(verbosity: int) -> None:
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


class SecoGroup(click.Group):
    """A group whose commands turn seco's errors into ``Error: ... (hint: ...)`` and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SecoError as e:
            click.echo(f"Error: {e.one_line()}", err=True)
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Error: interrupted (hint: rerun the same command to resume)", err=True)
            ctx.exit(130)
        except Exception as e:  # noqa: BLE001 - last resort: never a bare traceback
            if (ctx.obj or {}).get("verbosity", 0) >= 2:
                traceback.print_exc()
            msg = " ".join(str(e).split()) or type(e).__name__
            click.echo(
                f"Error: internal error: {type(e).__name__}: {msg} "
                "(hint: rerun with -vv for the traceback and report it; collected data is safe to resume)",
                err=True,
            )
            ctx.exit(INTERNAL_ERROR)


def verbosity_options(f):
    f = click.option("-q", "--quiet", count=True, help="Less output (errors only).")(f)
    f = click.option("-v", "--verbose", count=True, help="More output (-v info, -vv debug and tracebacks).")(f)
    return f
