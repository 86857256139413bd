"""CURVE keys and the ZAP authenticator: who may talk to the router, and with which keys.

Key files are the ZeroMQ certificate files ``statspout-keygen`` writes (``NAME.key`` holds the
public key, ``NAME.key_secret`` both keys). The router has a key pair and a folder of
authorized public keys; a collector or sink has its own key pair and the router's public key.
This module only loads keys and decides who is authorized; ``bus.py`` puts keys on sockets.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from statspout import cli

log = logging.getLogger("statspout.security")


class BadKey(ValueError):
    """A key file or folder that cannot be used; the text names the file and the reason."""


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, both keys Z85-encoded (40 bytes each)."""

    public: bytes
    secret: bytes


@dataclass(frozen=True)
class ClientKeys:
    """What a collector or sink needs to talk to a CURVE router."""

    own: KeyPair
    server_public: bytes


def load_key_pair(path: str | Path) -> KeyPair:
    """Both keys from a ``.key_secret`` file; BadKey when it is missing or holds no secret."""
    public, secret = _load(path)
    if not secret:
        raise BadKey(f"{path}: holds no secret key (pass the .key_secret file)")
    return KeyPair(public, secret)


def load_public_key(path: str | Path) -> bytes:
    """The public key from a ``.key`` (or ``.key_secret``) file."""
    public, _ = _load(path)
    return public


def load_authorized_keys(folder: str | Path) -> frozenset[bytes]:
    """Every public key in ``folder/*.key``; a folder that cannot be read, or a file in it that
    is no key, is an error (rather than silently authorizing fewer peers than intended)."""
    path = Path(folder)
    if not path.is_dir():
        raise BadKey(f"{folder}: authorized-keys folder does not exist")
    return frozenset(load_public_key(file) for file in sorted(path.glob("*.key")))


def _load(path: str | Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise BadKey(f"{path}: {exc.strerror or exc}") from None
    except Exception as exc:  # pyzmq raises ValueError/TypeError/KeyError for bad contents
        raise BadKey(f"{path}: not a ZeroMQ key file ({exc})") from None
    if not public or len(public) != 40:
        raise BadKey(f"{path}: not a ZeroMQ key file (no 40-character public key)")
    return public, secret


class Authenticator:
    """The router's ZAP handler: accepts CURVE peers whose public key is in one folder.

    pyzmq's ThreadAuthenticator answers the handshakes in its own thread; ``reload`` re-reads the
    folder (on SIGHUP). A handshake is only checked when a peer connects, so the router also asks
    ``is_authorized`` for established links, to stop a peer whose key was removed.
    """

    def __init__(self, context: zmq.Context, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._keys = load_authorized_keys(self.folder)
        self._thread = ThreadAuthenticator(context, log=logging.getLogger("statspout.zap"))
        self._thread.start()
        self._thread.configure_curve(domain="*", location=str(self.folder))

    @property
    def keys(self) -> frozenset[bytes]:
        return self._keys

    def is_authorized(self, user_id: str | None) -> bool:
        """``user_id`` is the Z85 public key ZAP gave a peer's messages (their User-Id)."""
        return user_id is not None and user_id.encode("ascii", "replace") in self._keys

    def reload(self) -> frozenset[bytes]:
        """Re-read the folder; returns the keys that are no longer authorized. A folder that
        cannot be read raises BadKey and the keys in force stay."""
        keys = load_authorized_keys(self.folder)
        self._thread.configure_curve(domain="*", location=str(self.folder))
        removed = self._keys - keys
        self._keys = keys
        return removed

    def stop(self) -> None:
        self._thread.stop()


@dataclass(frozen=True)
class ServerSecurity:
    """The router's CURVE set-up: its key pair, and the running authenticator."""

    own: KeyPair
    authenticator: Authenticator


def start_server_security(
    context: zmq.Context, secret_key_file: str | Path, authorized_folder: str | Path
) -> ServerSecurity:
    """Load the router's keys and start the authenticator in ``context``. It must run before the
    router binds: ZeroMQ accepts every CURVE client when no ZAP handler answers."""
    own = load_key_pair(secret_key_file)
    return ServerSecurity(own, Authenticator(context, authorized_folder))


# Command-line options of the CURVE clients (collector and sink workers).


def add_client_options(parser: cli.OptionParser) -> None:
    """``--curve-secret-key`` and ``--curve-server-key``: both turn CURVE on, or neither."""
    group = parser.add_argument_group("CURVE security (docs/security.md; both or neither)")
    parser.option("--curve-secret-key", help="this program's own key pair (a .key_secret file)",
                  metavar="FILE", group=group)
    parser.option("--curve-server-key", help="the router's public key (its .key file)",
                  metavar="FILE", group=group)


def client_keys_from_args(
    args: argparse.Namespace, parser: cli.OptionParser
) -> ClientKeys | None:
    """The keys the options name, None without CURVE; a bad file exits 2 with one line."""
    secret_file, server_file = args.curve_secret_key, args.curve_server_key
    if not secret_file and not server_file:
        return None
    if not secret_file or not server_file:
        parser.error("--curve-secret-key and --curve-server-key go together")
    try:
        return ClientKeys(load_key_pair(secret_file), load_public_key(server_file))
    except BadKey as exc:
        parser.error(str(exc))
