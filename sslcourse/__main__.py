"""``python -m sslcourse``: the same as the ``sslcourse`` command."""

from .cli import main

raise SystemExit(main())
