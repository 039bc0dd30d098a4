"""Atomic file writes with a checksum: a reader (a download, a resumed job) sees either no file
or the whole file, never a half-written one."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> tuple[str, int]:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    Returns ``(sha256 hex, size_bytes)`` of what was written. The temporary file is removed if
    anything fails, and an existing ``path`` is only ever replaced whole.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # an export is shared, not a secret (mkstemp: 0600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest(), len(data)
