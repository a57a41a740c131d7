"""A file the test process may not read, also when the tests run as root (as CI does)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def unreadable_file(content: bytes) -> Iterator[Path]:
    """Yield a file holding ``content`` that this process may not read inside the block.

    Permission bits do not stop root, so as root the block runs with the effective user
    ``nobody`` (the real user stays root, which restores it after). Skips when neither
    works: on Windows, or for a user that may read any file.
    """
    with _private_folder() as folder:
        path = folder / "metrics.jsonl"
        path.write_bytes(content)
        path.chmod(0)
        with _unprivileged():
            _skip_unless_denied(path)
            yield path


@contextmanager
def closed_folder() -> Iterator[Path]:
    """Yield a folder holding ``metrics.jsonl`` that this process may not enter in the block.

    Made as `unreadable_file` makes its file, with the same skips.
    """
    with _private_folder() as parent:
        folder = parent / "closed"
        folder.mkdir()
        (folder / "metrics.jsonl").write_bytes(b"")
        folder.chmod(0)
        try:
            with _unprivileged():
                _skip_unless_denied(folder / "metrics.jsonl")
                yield folder
        finally:
            folder.chmod(0o700)  # so that it can be removed


@contextmanager
def _private_folder() -> Iterator[Path]:
    if sys.platform == "win32":
        pytest.skip("POSIX permission bits are needed to make a file unreadable")
    folder = Path(tempfile.mkdtemp(prefix="botperf-unreadable-"))
    try:
        folder.chmod(0o755)  # open to every user: only what is made in it is closed
        yield folder
    finally:
        shutil.rmtree(folder)


def _skip_unless_denied(path: Path) -> None:
    try:
        path.open("rb").close()
    except PermissionError:
        return
    pytest.skip("this user may read a file of mode 000, so none is unreadable")


@contextmanager
def _unprivileged() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    import pwd  # POSIX only, as is root

    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        nobody = 65534
    os.seteuid(nobody)
    try:
        yield
    finally:
        os.seteuid(0)
