"""``python -m engine.sandbox [--port N] [--faults KIND:...] [--ledger FILE]``."""

from engine.sandbox.command import main

raise SystemExit(main())
