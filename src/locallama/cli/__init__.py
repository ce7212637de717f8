"""The ``locallama`` command: one module per command group, errors mapped here once."""

from __future__ import annotations

import errno
import importlib
import sys

from locallama.cli.app import app
from locallama.errors import LocallamaError

#: The command modules, in the order --help lists their commands (each registers its
#: own on import).
COMMAND_MODULES = ("evals", "fit", "imports", "measure", "models", "quantize", "run", "serve",
                   "server_cmds", "everyday")


def _register() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(f"locallama.cli.{module}")


#: OSErrors that are the machine's state, not a bug: one line, as a LocallamaError
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM,
                             errno.EROFS, errno.EIO})


def main() -> None:
    """Entry point: a LocallamaError becomes one line on stderr and exit status 1; only
    the CLI's own output reaches stdout (``cli.output.isolate_stdout``)."""
    from locallama.cli.output import isolate_stdout

    isolate_stdout()
    _register()
    try:
        app()
    except LocallamaError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(141)
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        # the store types its own; this catches a full or read-only disk anywhere else
        where = f" ({exc.filename})" if exc.filename else ""
        sys.stderr.write(f"Error: {exc.strerror or exc}{where}\n")
        sys.exit(1)
