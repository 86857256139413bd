"""CURVE keys and the ZAP authenticator: who may talk to the router, and with which keys.

Key files are the ZeroMQ certificate files ``statspout-keygen`` writes (``NAME.key`` holds the
public key, ``NAME.key_secret`` both keys). The router has a key pair and a folder of
authorized public keys; a collector or sink has its own key pair and the router's public key.
One keys folder (``--keys-dir``, ``STATSPOUT_KEYS_DIR``) can hold all of a host's files under
fixed names (``KEYS_DIR_LAYOUT``), so that one setting turns CURVE on for every program.
This module only loads keys and decides who is authorized; ``bus.py`` puts keys on sockets.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
import zmq.utils.z85
from zmq.auth.thread import ThreadAuthenticator

from statspout import cli
from statspout.logs import ThrottledErrors

log = logging.getLogger("statspout.security")

KEYS_DIR_LAYOUT = """\
router.key_secret (the router's pair), router.key (its public key, for the others),
collector.key_secret, sink.key_secret (their pairs), authorized/ (the public keys the router
lets in)"""
AUTHORIZED_SUBFOLDER = "authorized"
# Refused handshakes are logged at most this often; the count in the line carries the rest.
REFUSAL_LOG_EVERY_S = 10.0
# Addresses remembered for the keys that connected (to name a revoked key's peer); the oldest
# are forgotten first.
MAX_REMEMBERED_PEERS = 4096


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


def load_key_pair(path: str | Path, label: str = "") -> KeyPair:
    """Both keys from a ``.key_secret`` file; BadKey when it is missing or holds no secret.
    ``label`` (the option that named the file) starts the error text."""
    public, secret = _load(path, label)
    if not secret:
        raise BadKey(f"{_named(path, label)}: holds no secret key (pass the .key_secret file)")
    return KeyPair(public, secret)


def load_public_key(path: str | Path, label: str = "") -> bytes:
    """The public key from a ``.key`` (or ``.key_secret``) file."""
    public, _ = _load(path, label)
    return public


def load_authorized_keys(folder: str | Path, label: str = "") -> frozenset[bytes]:
    """Every public key in ``folder/*.key``; a folder that cannot be read, or a file in it that
    is no key, is an error (rather than silently authorizing fewer peers than intended)."""
    path = Path(folder)
    if not path.is_dir():
        raise BadKey(f"{_named(folder, label)}: authorized-keys folder does not exist")
    return frozenset(load_public_key(file) for file in sorted(path.glob("*.key")))


def _named(path: str | Path, label: str) -> str:
    return f"{label} {path}" if label else str(path)


def _load(path: str | Path, label: str = "") -> tuple[bytes, bytes | None]:
    # pyzmq says "Invalid certificate file" for a file that is not there: say what it is.
    if not Path(path).exists():
        raise BadKey(f"{_named(path, label)}: no such file")
    if not Path(path).is_file():
        raise BadKey(f"{_named(path, label)}: not a file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise BadKey(f"{_named(path, label)}: {exc.strerror or exc}") from None
    except Exception as exc:  # pyzmq raises ValueError/TypeError/KeyError for bad contents
        raise BadKey(f"{_named(path, label)}: not a ZeroMQ key file ({exc})") from None
    if not public or len(public) != 40:
        raise BadKey(f"{_named(path, label)}: not a ZeroMQ key file (no 40-character public key)")
    return public, secret


class Authenticator:
    """The router's ZAP handler: accepts CURVE peers whose public key is in one folder.

    pyzmq's ThreadAuthenticator answers the handshakes in its own thread; ``reload`` re-reads the
    folder (on SIGHUP). A handshake is only checked when a peer connects, so the router also asks
    ``is_authorized`` for established links, to stop a peer whose key was removed.
    """

    def __init__(self, context: zmq.Context, folder: str | Path, label: str = "") -> None:
        self.folder = Path(folder)
        self._keys = load_authorized_keys(self.folder, label)
        # Who a key is, for the line about a revoked key: its file's name (kept after the file
        # is deleted) and the address it last connected from. Bounded by the keys ever loaded.
        self._names = self._file_names()
        self._revoked_errors = ThrottledErrors(log, REFUSAL_LOG_EVERY_S)
        self._thread = _RefusalLoggingAuthenticator(context, self.folder)
        self._thread.start()
        self._thread.configure_curve(domain="*", location=str(self.folder))

    @property
    def keys(self) -> frozenset[bytes]:
        return self._keys

    def is_authorized(self, user_id: str | None) -> bool:
        """``user_id`` is the Z85 public key ZAP gave a peer's messages (their User-Id)."""
        if user_id is None:
            return False
        key = user_id.encode("ascii", "replace")
        if key in self._keys:
            return True
        self._revoked_errors.error(
            "dropped a message from %s: its key is no longer in %s",
            self.describe_key(key), self.folder)
        return False

    def describe_key(self, key: bytes) -> str:
        """``collector-web1.key, peer 10.0.0.7``: the key's file and the address it used."""
        name = self._names.get(key)
        where = self._thread.peers.get(key)
        parts = [f"{name}.key" if name else f"key {key[:8].decode(errors='replace')}…"]
        if where:
            parts.append(f"peer {where}")
        return ", ".join(parts)

    def reload(self) -> frozenset[bytes]:
        """Re-read the folder; returns the keys that are no longer authorized. A folder that
        cannot be read raises BadKey and the keys in force stay."""
        keys = load_authorized_keys(self.folder)
        self._names.update(self._file_names())
        self._thread.configure_curve(domain="*", location=str(self.folder))
        removed = self._keys - keys
        self._keys = keys
        for key in removed:
            log.info("no longer authorized: %s", self.describe_key(key))
        return removed

    def _file_names(self) -> dict[bytes, str]:
        return {load_public_key(file): file.stem for file in sorted(self.folder.glob("*.key"))}

    @property
    def refused(self) -> int:
        """Handshakes refused so far because the peer's key is not authorized."""
        return self._thread.refused

    def stop(self) -> None:
        self._thread.stop()


class _RefusalLoggingAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, which also logs every refused handshake with the peer's address
    (at most one line every REFUSAL_LOG_EVERY_S; the line carries the count)."""

    def __init__(self, context: zmq.Context, folder: Path) -> None:
        super().__init__(context, log=logging.getLogger("statspout.zap"))
        self._folder = folder
        self._errors = ThrottledErrors(log, REFUSAL_LOG_EVERY_S)
        self._peer = "an unknown address"
        self.refused = 0
        # The address each authorized key last came from (Z85 key → address).
        self.peers: dict[bytes, str] = {}

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # ZAP request frames: version, request id, domain, address, identity, mechanism, …
        if len(msg) > 3:
            self._peer = msg[3].decode("utf-8", "replace") or "an unknown address"
        if len(msg) == 7 and msg[5] == b"CURVE" and len(msg[6]) == 32:
            if len(self.peers) >= MAX_REMEMBERED_PEERS:  # strangers' keys must not grow it
                del self.peers[next(iter(self.peers))]
            self.peers[zmq.utils.z85.encode(msg[6])] = self._peer
        await super().handle_zap_message(msg)

    def _send_zap_reply(
        self, request_id: bytes, status_code: bytes, status_text: bytes,
        user_id: str = "anonymous",
    ) -> None:
        if status_code != b"200":
            self.refused += 1
            self._errors.error(
                "refused a CURVE handshake from %s: its public key is not in %s "
                "(%d refused so far; give that collector or sink a key from there, or add its "
                ".key file and send SIGHUP)", self._peer, self._folder, self.refused)
        super()._send_zap_reply(request_id, status_code, status_text, user_id)


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
    own = load_key_pair(secret_key_file, "--curve-secret-key")
    return ServerSecurity(own, Authenticator(context, authorized_folder, "--authorized-keys"))


def add_keys_dir_option(parser: cli.OptionParser, group: argparse._ArgumentGroup) -> None:
    """``--keys-dir`` (``STATSPOUT_KEYS_DIR`` for every program): the host's keys folder."""
    parser.option("--keys-dir", help="folder of this host's CURVE keys, which turns CURVE on: "
                  f"{KEYS_DIR_LAYOUT}; the options above win over it", metavar="DIR",
                  group=group, env_prefix=cli.ENV_PREFIX)


def server_files_from_args(args: argparse.Namespace) -> None:
    """Fill the router's --curve-secret-key and --authorized-keys from --keys-dir (an option
    given explicitly wins)."""
    if args.keys_dir:
        folder = Path(args.keys_dir)
        args.curve_secret_key = args.curve_secret_key or str(folder / "router.key_secret")
        args.authorized_keys = args.authorized_keys or str(folder / AUTHORIZED_SUBFOLDER)


# Command-line options of the CURVE clients (collector and sink workers).


SECURITY_GROUP = "CURVE security (see security.md in the statspout documentation)"


def add_client_options(parser: cli.OptionParser) -> None:
    """``--curve-secret-key`` and ``--curve-server-key`` (both turn CURVE on, or neither), or
    ``--keys-dir``, where this program's pair is PROGRAM.key_secret (``statspout-collector`` →
    collector.key_secret, ``statspout-sink`` → sink.key_secret)."""
    group = parser.add_argument_group(SECURITY_GROUP)
    parser.option("--curve-secret-key", help="this program's own key pair (a .key_secret file)",
                  metavar="FILE", group=group)
    parser.option("--curve-server-key", help="the router's public key (its .key file)",
                  metavar="FILE", group=group)
    add_keys_dir_option(parser, group)


def client_keys_from_args(
    args: argparse.Namespace, parser: cli.OptionParser
) -> ClientKeys | None:
    """The keys the options name, None without CURVE; a bad file exits 2 with one line."""
    secret_file, server_file = args.curve_secret_key, args.curve_server_key
    secret_label, server_label = "--curve-secret-key", "--curve-server-key"
    if args.keys_dir:
        own_name = parser.prog.removeprefix("statspout-")
        if not secret_file:
            secret_file = str(Path(args.keys_dir, f"{own_name}.key_secret"))
            secret_label = f"--keys-dir {args.keys_dir}:"
        if not server_file:
            server_file = str(Path(args.keys_dir, "router.key"))
            server_label = f"--keys-dir {args.keys_dir}:"
    if not secret_file and not server_file:
        return None
    if not secret_file or not server_file:
        parser.error("--curve-secret-key and --curve-server-key go together (or --keys-dir)")
    try:
        return ClientKeys(load_key_pair(secret_file, secret_label),
                          load_public_key(server_file, server_label))
    except BadKey as exc:
        parser.error(str(exc))
