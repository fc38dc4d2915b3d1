"""What happens to an exception raised by a user's callback (``Modem.on_urc``,
``GpioLine.on_edge``): the callback runs on a C callback thread where nobody could
catch it, so it is reported, not swallowed. Each is kept in ``callback_errors`` and
added to the timeline (``callback.error``); the first one per object is printed to
stderr with its traceback, later ones are counted there. close() does not re-raise
them: it runs in ``finally``/``with`` exits, where raising would hide the test's own
error; a test asserts ``not obj.callback_errors`` when callbacks must not fail."""
from __future__ import annotations

import sys
import threading
import traceback
from typing import Any


class CallbackErrors:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def report(self, exc: BaseException, what: str, timeline: Any, source: str) -> None:
        with self._lock:
            self.errors.append(exc)
            first = len(self.errors) == 1
        if first:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            print(f"fotabench: a callback of {self.owner} raised on {what} (kept in "
                  f"callback_errors; later ones are only counted there):\n{text}",
                  end="", file=sys.stderr, flush=True)
        if timeline is not None:
            timeline.add(source, "callback.error", on=what, error=repr(exc))
