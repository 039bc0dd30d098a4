"""``python -m service``: apply migrations, then serve the API on NAS_HOST:NAS_PORT."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from service.server import serve


def main() -> None:
    """Serve; a bad NAS_* setting is one line naming it (no traceback) and exit code 2, a
    database that cannot be used (corrupt, locked, unreadable) one line and exit code 1."""
    from service.commands._common import validation_message
    from service.migrate import DatabaseStartError

    try:
        serve()
    except ValidationError as exc:
        print(f"error: settings: {validation_message(exc)}", file=sys.stderr)
        sys.exit(2)
    except DatabaseStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
