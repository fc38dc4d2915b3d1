"""The bench: one upgrade as one call (``Upgrade``), stations of many modules (``Bench``).

Station data lives in ``config`` (plain dataclasses), read from YAML by ``station``;
``dut`` is one module (port, lines, power), ``upgrade`` one upgrade judged pass / fail /
error, ``grammar`` the callback-state grammar of spec section 2, ``dialect`` how an app
speaks about an upgrade, ``events`` the one event stream, ``progress`` its display.
See docs/bench.md."""
