"""Command-line conventions shared by every statspout program.

Every option is a flag and an environment variable named after the program and the flag:
``statspout-collector --interval`` is also ``STATSPOUT_COLLECTOR_INTERVAL``, and a sink's own
``--stdout.format`` is ``STATSPOUT_STDOUT_FORMAT``. A flag wins over the variable, the variable
over the default. Switches that change what a program is (``--status``, ``--help``,
``--version``) have no variable: an exported variable must not turn a router into a client.
The environment is read when the command line is parsed, after ``--help``, so a bad variable
never hides the help.
Bad values print one line and exit with status 2. Logs go to stderr with time and level.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

ENV_PREFIX = "STATSPOUT_"

def env_name(flag: str, prefix: str = ENV_PREFIX) -> str:
    """``--rest.address`` → ``STATSPOUT_REST_ADDRESS``."""
    return prefix + flag.lstrip("-").upper().replace(".", "_").replace("-", "_")


def version() -> str:
    """The installed package's version (from its metadata)."""
    try:
        return importlib.metadata.version("statspout")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


class _Unset:
    """Marks an option the command line did not give; the environment or the default fills it."""

    def __repr__(self) -> str:
        return "unset"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class _EnvOption:
    dest: str
    env: str | None
    default: Any
    type: Callable[[str], Any] | None  # None: a switch
    choices: Sequence[str] | None
    repeatable: bool


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; option lines wrapped to the terminal, at most 100 columns."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=min(100, _columns()))


def _columns() -> int:
    try:
        return int(os.environ.get("COLUMNS", "")) - 2
    except ValueError:
        return 98


class OptionParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, and whose options read the environment."""

    def __init__(self, *args: Any, env_prefix: str = ENV_PREFIX, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        self.env_prefix = env_prefix
        super().__init__(*args, **kwargs)
        self._env_options: list[_EnvOption] = []
        if self.add_help:
            self.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                              help="print the version and exit")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def option(
        self,
        flag: str,
        *,
        help: str,
        default: Any = None,
        type: Callable[[str], Any] = str,
        choices: Sequence[str] | None = None,
        repeatable: bool = False,
        metavar: str | None = None,
        group: argparse._ArgumentGroup | None = None,
        env_prefix: str | None = None,
        env: bool = True,
    ) -> None:
        """Add ``flag`` with its environment variable (none with ``env=False``).

        A repeatable option collects every use of the flag; its variable holds the values
        separated by commas. A value from the variable is checked like one from the flag.
        """
        variable = env_name(flag, self.env_prefix if env_prefix is None else env_prefix)
        shown = [f"env {variable}"] if env else []
        if default not in (None, "") and not repeatable:
            shown.append(f"default {default}")
        text = f"{help} ({', '.join(shown)})" if shown else help
        if metavar is None and choices is None:
            metavar = getattr(type, "metavar", "VALUE")
        action = (group or self).add_argument(
            # An append action copies its default, so a repeatable option's mark is None.
            flag, action="append" if repeatable else "store", type=type,
            default=None if repeatable else UNSET,
            choices=choices, help=text, metavar=metavar,
        )
        self._env_options.append(_EnvOption(action.dest, variable if env else None,
                                            [] if repeatable else default, type, choices,
                                            repeatable))

    def switch(
        self, flag: str, *, help: str, group: argparse._ArgumentGroup | None = None,
        env: bool = True,
    ) -> None:
        """A boolean flag; its variable (none with ``env=False``) is true for 1/true/yes/on."""
        variable = env_name(flag, self.env_prefix)
        action = (group or self).add_argument(
            flag, action="store_const", const=True, default=UNSET,
            help=f"{help} (env {variable})" if env else help,
        )
        self._env_options.append(_EnvOption(action.dest, variable if env else None, False,
                                            None, None, False))

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        for option in self._env_options:
            value = getattr(parsed, option.dest, UNSET)
            if value is UNSET or (option.repeatable and value is None):
                setattr(parsed, option.dest, self._from_env(option))
        return parsed, rest

    def _from_env(self, option: _EnvOption) -> Any:
        raw = os.environ.get(option.env) if option.env else None
        if raw is None or (option.type is None and raw == ""):
            return option.default
        if option.type is None:
            if raw.lower() not in _TRUE + _FALSE:
                self.error(f"{option.env}={raw!r} is not a boolean (use 1/0, true/false)")
            return raw.lower() in _TRUE
        if option.repeatable:
            return [self._convert(v.strip(), option, None) for v in raw.split(",") if v.strip()]
        return self._convert(raw, option, option.choices)

    def _convert(self, raw: str, option: _EnvOption, choices: Sequence[str] | None) -> Any:
        assert option.type is not None
        try:
            value = option.type(raw)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            self.error(f"{option.env}={raw!r}: {exc}")
        if choices is not None and value not in choices:
            self.error(f"{option.env}={raw!r}: choose from {', '.join(map(str, choices))}")
        return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


# Value types: each raises ArgumentTypeError with a message that names the problem, and has a
# ``metavar`` the help shows.


def _named(metavar: str) -> Callable[[Callable[[str], Any]], Callable[[str], Any]]:
    def mark(parse: Callable[[str], Any]) -> Callable[[str], Any]:
        parse.metavar = metavar  # type: ignore[attr-defined]
        return parse

    return mark


_ENDPOINT = re.compile(
    r"^(tcp://(\*|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.:-]+):\d{1,5}|ipc://.+|inproc://.+)$"
)


@_named("ENDPOINT")
def endpoint(text: str) -> str:
    """A ZeroMQ endpoint (tcp://HOST:PORT, ipc://PATH, inproc://NAME), unchanged."""
    if not _ENDPOINT.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a ZeroMQ endpoint (tcp://HOST:PORT, ipc://PATH)")
    if text.startswith("tcp://"):
        port = int(text.rsplit(":", 1)[1])
        if not 0 < port < 65536:
            raise argparse.ArgumentTypeError(f"{text!r}: port {port} is out of range")
    return text


def seconds(minimum: float) -> Callable[[str], float]:
    @_named("SECONDS")
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not value >= minimum:  # also rejects NaN
            raise argparse.ArgumentTypeError(f"{text} s is below the minimum of {minimum:g} s")
        return value

    parse.__name__ = "seconds"
    return parse


def whole_number(minimum: int) -> Callable[[str], int]:
    @_named("N")
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be at least {minimum}")
        return value

    parse.__name__ = "whole number"
    return parse


positive_int = whole_number(1)


@_named("HOST:PORT")
def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def add_common_options(parser: OptionParser) -> None:
    """Options every program has."""
    parser.option(
        "--log-level",
        help="log level",
        default="info",
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
    )
    parser.option(
        "--report-interval",
        help="seconds between the log lines that report counters",
        default=60.0,
        type=seconds(1),
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def event_on_signals(*signums: signal.Signals) -> threading.Event:
    """An event that ``signums`` set; the handler only sets it, and the program's loop looks
    at it between polls (a handler must not touch sockets or locks the loop may hold)."""
    event = threading.Event()
    for signum in signums:
        signal.signal(signum, lambda *_: event.set())
    return event


def stop_on_termination() -> threading.Event:
    """The stop event of every program: SIGTERM (how supervisord stops a program) or SIGINT."""
    return event_on_signals(signal.SIGTERM, signal.SIGINT)
