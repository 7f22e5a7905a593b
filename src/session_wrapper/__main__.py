"""Entry point for ``python -m session_wrapper``."""

from session_wrapper.cli import main

raise SystemExit(main())
