"""Command-line conventions shared by every statspout program.

Every option is a flag and an environment variable named after the program and the flag:
``statspout-collector --interval`` is also ``STATSPOUT_COLLECTOR_INTERVAL``, and a sink's own
``--stdout.format`` is ``STATSPOUT_STDOUT_FORMAT``. A flag wins over the variable, the variable
over the default.
Bad values print one line and exit with status 2. Logs go to stderr with time and level.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from statspout import bus

ENV_PREFIX = "STATSPOUT_"


def env_name(flag: str, prefix: str = ENV_PREFIX) -> str:
    """``--rest.address`` → ``STATSPOUT_REST_ADDRESS``."""
    return prefix + flag.lstrip("-").upper().replace(".", "_").replace("-", "_")


class OptionParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, and whose options read the environment."""

    def __init__(self, *args: Any, env_prefix: str = ENV_PREFIX, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        self.env_prefix = env_prefix
        super().__init__(*args, **kwargs)
        # Values of repeatable options taken from the environment, used when the flag is absent.
        self._env_lists: dict[str, list[Any]] = {}

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
    ) -> None:
        """Add ``flag`` with its environment variable.

        A repeatable option collects every use of the flag; its variable holds the values
        separated by commas. A value from the variable is checked like one from the flag.
        """
        env = env_name(flag, self.env_prefix if env_prefix is None else env_prefix)
        target = group or self
        shown_default = "" if default is None or repeatable else f", default {default}"
        text = f"{help} (env {env}{shown_default})"
        raw = os.environ.get(env)
        if repeatable:
            values = _split_env(raw, env, type, self) if raw else []
            target.add_argument(
                flag, action="append", type=type, default=None, help=text, metavar=metavar
            )
            self._env_lists[flag] = values
            return
        if raw is not None:
            default = _convert_env(raw, env, type, choices, self)
        target.add_argument(
            flag, type=type, default=default, choices=choices, help=text, metavar=metavar
        )

    def switch(self, flag: str, *, help: str, group: argparse._ArgumentGroup | None = None) -> None:
        """A boolean flag; its variable is true for 1/true/yes/on."""
        env = env_name(flag, self.env_prefix)
        raw = os.environ.get(env, "")
        if raw and raw.lower() not in _TRUE + _FALSE:
            self.error(f"{env}={raw!r} is not a boolean (use 1/0, true/false)")
        (group or self).add_argument(
            flag, action="store_true", default=raw.lower() in _TRUE, help=f"{help} (env {env})"
        )

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        for flag, values in self._env_lists.items():
            dest = flag.lstrip("-").replace("-", "_")  # as argparse derives it
            if getattr(parsed, dest) is None:
                setattr(parsed, dest, values)
        return parsed


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _convert_env(
    raw: str,
    env: str,
    type: Callable[[str], Any],
    choices: Sequence[str] | None,
    parser: OptionParser,
) -> Any:
    try:
        value = type(raw)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(f"{env}={raw!r}: {exc}")
    if choices is not None and value not in choices:
        parser.error(f"{env}={raw!r}: choose from {', '.join(map(str, choices))}")
    return value


def _split_env(raw: str, env: str, type: Callable[[str], Any], parser: OptionParser) -> list[Any]:
    return [_convert_env(v.strip(), env, type, None, parser) for v in raw.split(",") if v.strip()]


# Value types: each raises ArgumentTypeError with a message that names the problem.


def endpoint(text: str) -> str:
    try:
        return bus.check_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(minimum: float) -> Callable[[str], float]:
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
