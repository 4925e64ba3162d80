"""Entry point of the ``robustlayers`` command: builds the parser from the subcommand modules and
turns every expected failure into one line on stderr.

Exit status: 0 success; 2 bad input (a usage error: wrong option, value, path or file); 1 work
that failed on valid input (corrupt run files, a database or disk error, an internal error);
130 Ctrl-C; 141 stdout closed early (``robustlayers models --json | head -1``), quietly. With
``--json`` an error is also printed to stdout as ``{"error", "kind", "exit_code", "command"}``.
``--debug`` (anywhere on the command line) adds the Python traceback. :func:`main` returns the
status, except for command-line parse errors, which raise ``SystemExit(2)`` as argparse does.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
import warnings

from robustlayers import __version__
from robustlayers.cli.errors import describe_error

# Each module exposes add_parser(subparsers) and run(args) -> int.
SUBCOMMANDS = ("models", "layers", "data", "evaluate", "train", "runs", "diagnose", "study",
               "demo")
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a program killed by the closed pipe would return


class UsageError(Exception):
    """A command-line parse error (unknown option, bad value); exit status 2."""

    def __init__(self, message: str, usage: str):
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    """Raises :class:`UsageError` instead of exiting, so that ``main`` reports it like every
    other error (and as JSON with ``--json``). Subcommand parsers inherit the class."""

    def error(self, message: str):
        raise UsageError(message, self.format_usage())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="robustlayers",
        description="Layer-wise adversarial robustness: which layers carry a classifier's "
        "robustness, and training methods that act on chosen layers.",
        epilog="Exit status: 0 success, 2 bad input, 1 failed work, 130 interrupted. "
        "--debug (anywhere) shows the Python traceback of an error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (also accepted after the "
                        "subcommand)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"robustlayers.cli.{name}_cmd")
        command = module.add_parser(sub)
        command.set_defaults(_run=module.run)
    return parser


def _split_flags(argv: list[str]) -> tuple[list[str], bool, bool]:
    """``(argv without --debug, debug, json)``; both flags are looked for before ``--``."""
    end = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[:end], argv[end:]
    debug = "--debug" in head or os.environ.get("ROBUSTLAYERS_DEBUG", "") not in ("", "0")
    return [a for a in head if a != "--debug"] + tail, debug, "--json" in head


def _command_of(argv: list[str]) -> str:
    """The subcommand named on the command line, for messages before parsing succeeded."""
    return next((a for a in argv if a in SUBCOMMANDS), "")


def _warning_printer(prefix: str):
    """A ``warnings.showwarning`` printing each distinct warning once as one line."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = f"{prefix}: warning: {message}"
        if text not in seen:
            seen.add(text)
            print(text, file=sys.stderr)
    return show


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so that the interpreter's final flush
    does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass


def _report(err: BaseException, prefix: str, command: str, *, debug: bool, as_json: bool,
            usage: str = "") -> int:
    kind, code, message = describe_error(err)
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    if usage:
        sys.stderr.write(usage)
    print(f"{prefix}: error: {message}", file=sys.stderr)
    if as_json:
        record = {"error": message, "kind": kind, "exit_code": code, "command": command or None}
        try:
            print(json.dumps(record), flush=True)
        except BrokenPipeError:
            _silence_stdout()
    return code


def main(argv: list[str] | None = None) -> int:
    """Run ``robustlayers ARGV``; returns the exit status (see the module docstring)."""
    argv, debug, as_json = _split_flags(list(sys.argv[1:] if argv is None else argv))
    if argv[:1] == ["--version"]:  # answered without importing the subcommands (and torch)
        print(f"robustlayers {__version__}")
        return 0
    command = _command_of(argv)
    prefix = f"robustlayers {command}".rstrip()
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(prefix)
        try:
            args = build_parser().parse_args(argv)
            code = int(args._run(args) or 0)
            sys.stdout.flush()
            return code
        except UsageError as err:  # exits like argparse does (callers may expect SystemExit)
            raise SystemExit(_report(err, prefix, command, debug=debug, as_json=as_json,
                                     usage=err.usage)) from None
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        except KeyboardInterrupt:
            print(f"{prefix}: interrupted (Ctrl-C)", file=sys.stderr)
            if as_json:
                print(json.dumps({"error": "interrupted (Ctrl-C)", "kind": "KeyboardInterrupt",
                                  "exit_code": EXIT_INTERRUPTED, "command": command or None}))
            return EXIT_INTERRUPTED
        except Exception as err:  # noqa: BLE001 - every failure becomes one line (see docstring)
            return _report(err, prefix, command, debug=debug, as_json=as_json)


if __name__ == "__main__":
    sys.exit(main())
