"""The live-run cache: sessions kept between episodes, per process (internal, not part of the public API).

After an episode the session's worker stays blocked at its pending durable call; the next episode of the same
execution takes it from here and resumes it instead of replaying the agent loop (:func:`.episode.drive`). An LRU
keyed by ``(instance id, execution key)`` (:func:`.compat.execution_key`), so a purged and restarted instance with the
same id never resumes a stale worker. Sessions that leave the cache (evicted, replaced, cache disabled) are
abandoned: their worker unwinds in its own thread.
"""

from __future__ import annotations

import collections
import threading

from .bridge import Session, live_sessions

__all__ = ["clear_session_cache", "drop", "holds", "put", "set_session_cache_size", "take"]

_lock = threading.Lock()
_cache: collections.OrderedDict[tuple[str, str], Session] = collections.OrderedDict()
_size = 64
_JOIN_TIMEOUT_SECONDS = 30.0


def set_session_cache_size(size: int) -> None:
    """Set how many live runs this process keeps between episodes (default 64; 0 disables the cache).

    Without the cache every episode replays the run from the start (correct, but CPU grows with the square of
    the number of turns). Evicted runs are unwound and replay from history on their next episode.
    """
    global _size
    with _lock:
        _size = max(0, int(size))
        evicted = _trim()
    for session in evicted:
        session.abandon()


def clear_session_cache() -> None:
    """Drop every cached run, as after a process restart, and end every worker thread of the runner.

    Abandons all live workers (cached ones and any still unwinding) and waits for their threads to end (up to
    30 s each), so the process's thread count is back to what it was before the runs started.
    """
    with _lock:
        sessions = list(_cache.values())
        _cache.clear()
    sessions.extend(live_sessions())
    for session in sessions:
        session.abandon()
    for session in sessions:
        session.abandon(join_timeout=_JOIN_TIMEOUT_SECONDS)


def _trim() -> list[Session]:
    """Evict least recently used runs over the size; the caller abandons them after releasing the lock."""
    evicted = []
    while len(_cache) > _size:
        _, session = _cache.popitem(last=False)
        evicted.append(session)
    return evicted


def take(key: tuple[str, str]) -> Session | None:
    """Remove and return the session cached under ``key``, if any."""
    with _lock:
        return _cache.pop(key, None)


def put(session: Session) -> None:
    """Keep ``session`` (most recently used). A different session under the same key, and runs evicted by the
    size limit, are abandoned; with the cache disabled ``session`` itself is not kept (the caller abandons it when
    its episode ends)."""
    with _lock:
        if _size == 0:
            return
        replaced = _cache.get(session.key)
        _cache[session.key] = session
        _cache.move_to_end(session.key)
        evicted = _trim()
    if replaced is not None and replaced is not session:
        evicted.append(replaced)
    for old in evicted:
        old.abandon()


def holds(session: Session) -> bool:
    """True when ``session`` is the one cached under its key."""
    with _lock:
        return _cache.get(session.key) is session


def drop(session: Session) -> None:
    """Remove ``session`` from the cache if it is the one cached under its key (it is not abandoned here)."""
    with _lock:
        if _cache.get(session.key) is session:
            del _cache[session.key]
