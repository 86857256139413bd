"""``statspout-keygen``'s key folder: private (0700) whatever the caller's umask."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from support.processes import program


def keygen_under_umask(umask: int, folder: Path, *names: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [program("statspout-keygen"), "--dir", str(folder), *names],
        capture_output=True, text=True, timeout=30, check=True,
        preexec_fn=lambda: os.umask(umask),
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_folder_is_created_0700_under_umask_000(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "keys"
    keygen_under_umask(0o000, folder, "router")
    assert mode(folder) == 0o700
    assert mode(folder / "router.key_secret") == 0o600
    assert mode(folder / "router.key") == 0o644


def test_the_key_folder_is_usable_under_a_umask_that_masks_the_owner(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    keygen_under_umask(0o277, folder, "router")  # mkdir alone would make it 0500: unwritable
    assert mode(folder) == 0o700
    assert (folder / "router.key_secret").exists()


def test_an_existing_folder_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o750)
    os.chmod(folder, 0o750)
    keygen_under_umask(0o022, folder, "c1")
    assert mode(folder) == 0o750
