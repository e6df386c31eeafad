"""Start several test stacks (runtime processes, servers) at once: their start-up is most of an integration file's
wall time, and they wait mostly on I/O."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["started_together"]

T = TypeVar("T")


@contextmanager
def started_together(builders: dict[str, Callable[[], T]]) -> Iterator[dict[str, T]]:
    """Call every builder in its own thread; yield ``{name: built}`` once all are built, and ``close()`` each on exit.

    When a builder raises, the others still finish, the ones that were built are closed, and the first error is
    raised (after every builder ended)."""
    built: dict[str, T] = {}
    errors: list[BaseException] = []

    def build(name: str, make: Callable[[], T]) -> None:
        try:
            built[name] = make()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after every builder ended
            errors.append(exc)

    threads = [threading.Thread(target=build, args=item) for item in builders.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if errors:
            raise errors[0]
        yield built
    finally:
        for stack in built.values():
            closer: Any = getattr(stack, "close", None)
            if callable(closer):
                closer()
