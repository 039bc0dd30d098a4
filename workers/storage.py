"""Artifact storage: the one place that turns a recorded artifact path into a file.

Checkpoints, latency tables, results and exported subnets live under NAS_ARTIFACT_DIR and are
recorded in the database by their path relative to it. Everything that reads or writes them
(the controller, the job runner, Ray Train workers on any node) goes through an
``ArtifactStore``, so a recorded path can never point outside the store and there is one rule
for where a file is:

- one machine: a local directory (the default, ``./var/``);
- a cluster: the same shared directory (NFS, a ReadWriteMany volume, a compose volume, an
  object store mounted with a FUSE or CSI driver) mounted at the same path on every node.

A directory, not an object-store API, because the writers are libraries that take a local path
(``torch.save``, the ONNX and TorchScript exporters, Ray Train's checkpoint storage). The
store's marker file lets a job runner on another node prove it sees the controller's directory
before it trains for an hour into a directory nobody will read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import IO, Any

MARKER_NAME = ".nas-store-id"
#: Less free space than this counts as a full store (one supernet checkpoint is larger).
LOW_SPACE_BYTES = 1 << 20


class StoreNotSharedError(RuntimeError):
    """A node does not see the controller's artifact directory."""


class ArtifactStore:
    """Files under one root directory, addressed by relative POSIX paths."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def path(self, relative: str | Path) -> Path:
        """The local path of ``relative``; ``ValueError`` when it would leave the root."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{relative}: outside the artifact directory")
        return path

    def relative(self, path: str | Path) -> str:
        """The recorded name of a file under the root; ``ValueError`` when it is not under it."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.root):
            raise ValueError(f"{path}: outside the artifact directory {self.root}")
        return resolved.relative_to(self.root).as_posix()

    def exists(self, relative: str | Path) -> bool:
        try:
            return self.path(relative).is_file()
        except ValueError:
            return False

    def open(self, relative: str | Path, mode: str = "rb") -> IO[Any]:
        """Open a file; writing creates its parent directories."""
        path = self.path(relative)
        if any(flag in mode for flag in "wax"):
            path.parent.mkdir(parents=True, exist_ok=True)
        return path.open(mode)

    def read_bytes(self, relative: str | Path) -> bytes:
        return self.path(relative).read_bytes()

    def write_problem(self) -> str | None:
        """Why nothing can be written under the root now (its filesystem is read-only or
        full), or None: turns a failed write into a reason an operator can act on."""
        try:
            stats = os.statvfs(self.root)
        except OSError as exc:
            return f"cannot be read: {exc.strerror}"
        if stats.f_flag & os.ST_RDONLY:
            return "is on a read-only file system"
        free = stats.f_bavail * stats.f_frsize
        return f"is full ({free} bytes free)" if free < LOW_SPACE_BYTES else None

    def remove_tree(self, relative: str | Path) -> None:
        """Delete a directory and everything in it (a deleted job's files); missing is fine."""
        shutil.rmtree(self.path(relative), ignore_errors=True)

    # --- proving that a node sees the same store ------------------------------------------

    def ensure_marker(self) -> str:
        """The store's id, written once by the first controller that opens it."""
        marker = self.root / MARKER_NAME
        if not marker.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            # Written aside, then linked: two controllers starting at once agree on one id.
            candidate = self.root / f"{MARKER_NAME}.{uuid.uuid4().hex}"
            candidate.write_text(uuid.uuid4().hex)
            try:
                with contextlib.suppress(FileExistsError):
                    os.link(candidate, marker)
            finally:
                candidate.unlink(missing_ok=True)
        return marker.read_text().strip()

    def check_marker(self, expected: str) -> None:
        """Raise ``StoreNotSharedError`` unless this node sees the store with id ``expected``."""
        marker = self.root / MARKER_NAME
        found = marker.read_text().strip() if marker.is_file() else None
        if found != expected:
            raise StoreNotSharedError(
                f"NAS_ARTIFACT_DIR {self.root} on {socket.gethostname()} is not the controller's "
                "artifact directory: mount the same shared directory at the same path on every "
                "Ray node (see docs/deploy.md)"
            )
