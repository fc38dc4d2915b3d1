"""The bench: one upgrade as one call (``Upgrade``), stations of many modules (``Bench``).
Station data lives in ``config`` (plain dataclasses); this package grows around it."""
