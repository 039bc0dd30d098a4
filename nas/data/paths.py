"""Keeping user-supplied dataset paths inside the data root (no ``..``, no symlink escapes).

One folder outside it is read too, by name: the Debian package ``dataset-fashion-mnist``'s
(``FASHION_MNIST_PACKAGE``), public data that kind ``fashion_mnist`` reads when it names no
root. Only that folder, after resolving its own symlinks; nothing else outside the root.
"""

from __future__ import annotations

import reprlib
from pathlib import Path

#: Linux's limits on a path and on one of its components (bytes; ASCII names are characters).
PATH_MAX = 4096
NAME_MAX = 255

#: Where ``apt-get install dataset-fashion-mnist`` puts the four IDX files (gzipped).
FASHION_MNIST_PACKAGE = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_APT = "apt-get install dataset-fashion-mnist"


def packaged_dirs() -> tuple[Path, ...]:
    """The folders outside the data root that may be read (resolved): installed datasets."""
    return (FASHION_MNIST_PACKAGE.resolve(),)


class DataPathError(ValueError):
    """A dataset path is missing, unresolvable or points outside the data root."""


def _unresolvable(field: str, user_path: str | Path, exc: Exception) -> DataPathError:
    if isinstance(exc, RuntimeError):  # Python 3.11's resolve() on ELOOP; expanduser on ~nobody
        why = "it holds a symlink loop" if "loop" in str(exc) else str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        why = exc.strerror.lower()  # "file name too long", "too many levels of symbolic links"
    else:
        why = str(exc)  # "embedded null byte"
    return DataPathError(f"{field}: {reprlib.repr(str(user_path))} cannot be resolved: {why}")


def resolve_inside(data_root: str | Path, user_path: str | Path, *, field: str = "root") -> Path:
    """Resolve ``user_path`` (relative to ``data_root``, or absolute) and refuse anything that,
    after following every symlink and ``..``, is not inside ``data_root`` (or one of the
    ``packaged_dirs``). Every failure is a ``DataPathError`` naming ``field``, never an
    ``OSError`` from the path's resolution."""
    base = Path(data_root).expanduser().resolve()
    try:
        candidate = Path(user_path).expanduser()
        if not candidate.is_absolute():
            candidate = base / candidate
        resolved = candidate.resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise _unresolvable(field, user_path, exc) from None
    if not resolved.is_relative_to(base) and not any(
        resolved.is_relative_to(folder) for folder in packaged_dirs()
    ):
        raise DataPathError(
            f"{field}: {reprlib.repr(str(user_path))} resolves outside the data root {str(base)!r} "
            "(NAS_DATA_ROOT); only paths inside it are read"
        )
    try:
        exists = resolved.exists()
    except OSError as exc:
        raise _unresolvable(field, user_path, exc) from None
    if not exists:
        raise DataPathError(
            f"{field}: {reprlib.repr(str(user_path))} does not exist under {str(base)!r}"
        )
    return resolved
