"""How the command line describes a failure: a kind, an exit status and one line of text.

Exit status 2 means bad input (fix the command: an option, a value, a path, a config file);
1 means the work failed on valid input (corrupt run files, database or disk errors, and
internal errors, which are bugs to report).
"""

from __future__ import annotations

import errno
import pickle
import sqlite3
import sys

from robustlayers.errors import FAILURE, USAGE, RobustLayersError

# OS errors about a path the user named: fix the path (exit 2). Other OS errors (disk full,
# I/O error) are failed work (exit 1).
PATH_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM,
               errno.EEXIST, errno.ENAMETOOLONG, errno.EROFS, errno.ELOOP}
PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
               FileExistsError)


def one_line(text: str) -> str:
    """``text`` with its lines joined by "; " (messages that list several problems)."""
    parts = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(parts)


def _yaml_error(err: BaseException) -> bool:
    yaml = sys.modules.get("yaml")
    return yaml is not None and isinstance(err, yaml.YAMLError)


def _yaml_message(err: BaseException) -> str:
    """``invalid YAML in FILE at line L, column C: PROBLEM (CONTEXT)`` from PyYAML's marks."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if mark is None or not problem:
        return f"invalid YAML: {one_line(err)}"
    name = "" if str(mark.name).startswith("<") else f" in {mark.name}"
    context = getattr(err, "context", None)
    return (f"invalid YAML{name} at line {mark.line + 1}, column {mark.column + 1}: {problem}"
            + (f" ({context})" if context else ""))


def _os_message(err: OSError) -> str:
    if err.filename is not None and err.strerror:
        where = repr(str(err.filename))
        if err.filename2 is not None:
            where += f" -> {str(err.filename2)!r}"
        return f"{err.strerror}: {where}"
    return str(err)


def describe_error(err: BaseException) -> tuple[str, int, str]:
    """``(kind, exit status, one-line message)`` of an exception that reached the CLI."""
    kind = type(err).__name__
    if type(err).__name__ == "UsageError":  # argparse errors (cli.main.UsageError)
        return "usage", USAGE, one_line(err)
    if isinstance(err, RobustLayersError):
        return kind, int(getattr(err, "exit_code", USAGE)), one_line(err)
    if isinstance(err, OSError):
        code = USAGE if isinstance(err, PATH_ERRORS) or err.errno in PATH_ERRNOS else FAILURE
        return kind, code, one_line(_os_message(err))
    if isinstance(err, sqlite3.Error):
        return kind, FAILURE, f"database error: {one_line(err)}"
    if _yaml_error(err):
        return kind, USAGE, _yaml_message(err)
    if isinstance(err, pickle.UnpicklingError):
        return kind, USAGE, f"file refused by the safe (weights-only) loader: {one_line(err)}"
    if isinstance(err, ValueError):  # the library's convention for bad input
        return kind, USAGE, one_line(err)
    if isinstance(err, MemoryError) or kind == "OutOfMemoryError":
        return kind, FAILURE, "out of memory" + (f": {one_line(err)}" if str(err) else "") + \
            "; try a smaller --batch-size"
    return ("internal", FAILURE,
            f"internal error ({kind}: {one_line(err) or 'no message'}); this is a bug in "
            "robustlayers: rerun with --debug for the traceback and report it")
