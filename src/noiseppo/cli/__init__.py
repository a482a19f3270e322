"""``noiseppo``: argument parsing and error reporting; the logic lives in the layers below.

One module per command, its parser (``add_parser``) beside its handler (``run``), named after the
command (``eval``: ``evaluate``, ``list``: ``listing``, so that neither shadows a builtin); the flags
several commands share in ``arguments``, the set-up of the commands that render in ``setup``.
Everything heavy is imported inside the handlers: a mistake is answered before torch loads.

A ``UserError`` becomes one line on stderr (``noiseppo: error: ...``) and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from noiseppo.cli import (
    compare,
    ddpo,
    evaluate,
    golden,
    listing,
    report,
    reward_server,
    sample,
    score,
    search,
    shapes,
    train,
)
from noiseppo.errors import DEBUG_ENV, UserError, debugging
from noiseppo.storage.interrupt import EXIT_STATUS, Interrupted  # standard library only: here before any Ctrl-C

COMMANDS = (score, shapes, sample, evaluate, golden, train, reward_server, search, ddpo, compare, report, listing)
"""The command modules, in the order ``noiseppo --help`` lists them."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit 2 like every other user error."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    import noiseppo

    # The package's docstring says what noiseppo does; this one's says what the cli package does.
    parser = _Parser(prog="noiseppo", description=noiseppo.__doc__)
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the full traceback of its cause (a reward's, a backend's) before the one line; "
        "anywhere on the line, for every command (also NOISEPPO_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _subcommand(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.ArgumentParser | None, int]:
    """The (sub)command parser ``argv`` names (``shapes render``: render's), and the index after its name."""
    found, start = None, 0
    while True:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = next((i for i in range(start, len(argv)) if not argv[i].startswith("-")), None)
        if choices is None or name is None or argv[name] not in choices:
            return found, start
        parser = found = choices[argv[name]]
        start = name + 1


def _values_taken(parser: argparse.ArgumentParser, token: str) -> int:
    """How many of the following tokens the option ``token`` reads (argparse's abbreviations too)."""
    if token.startswith("--") and "=" in token:
        return 0
    actions = {a for o, a in parser._option_string_actions.items() if o == token or o.startswith(token)}
    action = parser._option_string_actions.get(token) or (actions.pop() if len(actions) == 1 else None)
    if action is None or action.nargs == 0 or action.nargs == argparse.OPTIONAL:
        return 0
    return action.nargs if isinstance(action.nargs, int) else 1


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, with ``KEY=VALUE`` settings taken wherever they stand on the line.

    A command with an ``overrides`` positional (train, ddpo) collects them all, in order (argparse
    alone takes only the first unbroken group); any other command without positionals reads
    ``reward=X`` as ``--reward X`` where it stands, and a key it has no flag for is one line with
    the nearest one. Option values are never settings (``--prompt 'a=b'``), nor is anything after ``--``."""
    import re

    sub, start = _subcommand(parser, argv)
    takes = sub is not None and any(a.dest == "overrides" for a in sub._actions)
    if sub is None or (not takes and any(not a.option_strings for a in sub._actions)):
        return parser.parse_args(argv)  # score, report, list: their positionals are files and names
    kept, settings, i = argv[:start], [], start
    while i < len(argv) and argv[i] != "--":
        token = argv[i]
        taken = _values_taken(sub, token) if token.startswith("-") else 0
        if not token.startswith("-") and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", token):
            if takes:
                settings.append(token)
            else:
                kept.append(_as_flag(sub, token))
        else:
            kept += argv[i : i + 1 + taken]
        i += 1 + taken
    args = parser.parse_args(kept + argv[i:])
    if takes:
        args.overrides = [*args.overrides, *settings]
    return args


def _as_flag(parser: argparse.ArgumentParser, setting: str) -> str:
    """``KEY=VALUE`` as the flag ``--KEY=VALUE`` of ``parser``, or one line naming the nearest key."""
    from noiseppo.names import closest

    key, value = setting.split("=", 1)
    action = parser._option_string_actions.get("--" + key.replace("_", "-"))
    if action is None or action.nargs == 0:  # a switch is given as --switch, not switch=true
        options = parser._option_string_actions.items()
        keys = [o[2:].replace("-", "_") for o, a in options if o.startswith("--") and a.nargs != 0]
        near = closest(key, keys)
        hint = f"did you mean '{near}'?" if near else f"see '{parser.prog} --help'"
        raise UserError(f"'{setting}': {parser.prog} has no setting '{key}' ({hint})")
    return f"{action.option_strings[-1]}={value}"


def main(argv: Sequence[str] | None = None) -> int:
    args = None
    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" in argv[:end]:  # anywhere before --, for every command; the env reaches the processes it starts
        argv = [a for a in argv[:end] if a != "--debug"] + argv[end:]
        os.environ[DEBUG_ENV] = "1"
    try:
        args = _parse(build_parser(), argv)
        return args.func(args)
    except UserError as e:
        if debugging():
            _print_traceback(e)
        print(f"noiseppo: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:  # it says what was kept
        print(f"noiseppo: {e}", file=sys.stderr)
        return EXIT_STATUS
    except KeyboardInterrupt:
        print(f"noiseppo: {_interrupted(args)}", file=sys.stderr)
        return EXIT_STATUS


def _print_traceback(error: BaseException) -> None:
    """The whole chain behind a one-line error, also the parts a ``raise ... from None`` hid."""
    import traceback

    seen, link = set(), error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__suppress_context__ = False
        link = link.__cause__ or link.__context__
    traceback.print_exception(error, file=sys.stderr)


def _interrupted(args: argparse.Namespace | None) -> str:
    """The line for a Ctrl-C that came outside a training loop (which says more itself)."""
    out = getattr(args, "out", None)
    if getattr(args, "command", None) in ("train", "ddpo"):  # the trainers with a run folder
        from noiseppo.storage.steps import has_state  # not .checkpoint: the interrupt may have cut torch's import short

        run = args.resume or out
        if run and has_state(Path(run) / "checkpoint"):
            return f"interrupted; the run's checkpoint is kept: `noiseppo {args.command} --resume {run}` continues"
        return "interrupted before the run began; nothing to resume"
    if out and getattr(args, "shapes_command", None) != "train-base":  # written to a temporary folder
        return f"interrupted; nothing written to {out}"
    return "interrupted"


def entry_point() -> NoReturn:
    """The console script. Ctrl-C at any moment (imports, model loading, a held-out pass) is one line
    and exit status 130, never a traceback: ``main`` turns the first into its line, and a second one
    (while the first is handled, or while Python shuts down: threads joined, files flushed) ends the
    process at once, with a line of its own."""
    # Where SIGINT is ignored (a shell's background job, nohup), it stays ignored.
    handled = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if handled:
        signal.signal(signal.SIGINT, _first_sigint)
    try:
        code = main()
    except KeyboardInterrupt:  # one that came while main was already leaving
        print("noiseppo: interrupted", file=sys.stderr)
        code = EXIT_STATUS
    if handled:
        signal.signal(signal.SIGINT, _again_sigint)
    sys.exit(code)


def _first_sigint(signum: int, frame: object) -> None:
    signal.signal(signal.SIGINT, _again_sigint)
    raise KeyboardInterrupt


def _again_sigint(signum: int, frame: object) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to save
            pass
    os.write(2, b"\nnoiseppo: interrupted\n")
    os._exit(EXIT_STATUS)
