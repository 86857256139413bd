"""``statspout-keygen``: write CURVE key pairs for the router, collectors and sinks."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import zmq.auth

from statspout import cli

DESCRIPTION = """\
Write one CURVE key pair per NAME into DIR: NAME.key (the public key, safe to copy) and
NAME.key_secret (both keys, readable by its owner only). Give the router its router.key_secret
and put the .key file of every collector and sink allowed in into the router's
--authorized-keys folder; give every collector and sink its own .key_secret and router.key.
"""


def build_parser() -> cli.OptionParser:
    parser = cli.OptionParser(
        prog="statspout-keygen", description=DESCRIPTION, env_prefix="STATSPOUT_KEYGEN_"
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help="one key pair per name")
    parser.option("--dir", help="folder to write the key files into", default=".")
    parser.switch("--force", help="overwrite existing key files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    for name in args.names:
        if not name or "/" in name or name.startswith("."):
            parser.error(f"{name!r} is not a plain file name")
        files = (folder / f"{name}.key", folder / f"{name}.key_secret")
        existing = [path for path in files if path.exists()]
        if existing and not args.force:
            parser.error(f"{existing[0]} exists (pass --force to overwrite)")
    try:
        make_private_folder(folder)
        for name in args.names:
            print(*write_key_pair(folder, name), sep="\n")
    except OSError as exc:
        parser.error(f"cannot write keys into {folder}: {exc.strerror or exc}")
    return 0


def make_private_folder(folder: Path) -> None:
    """Create the key folder readable by its owner only (0700), whatever the umask; a folder
    that exists already is left as its owner set it."""
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    previous = os.umask(0o077)
    try:
        folder.mkdir(mode=0o700)
    finally:
        os.umask(previous)
    os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask; this is not


def write_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret; the secret file is created readable by its owner
    only, never briefly readable by others."""
    previous = os.umask(0o077)
    try:
        for stale in (folder / f"{name}.key", folder / f"{name}.key_secret"):
            stale.unlink(missing_ok=True)  # --force: new files get the new mode
        public, secret = zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(previous)
    os.chmod(public, 0o644)
    return Path(public), Path(secret)


if __name__ == "__main__":
    sys.exit(main())
