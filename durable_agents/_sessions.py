"""OpenAI Agents SDK sessions inside durable runs (internal; :func:`in_memory_session` is public).

A ``Session`` passed to ``Runner.run(..., session=...)`` is read and written by the SDK inside the orchestrator.
Without care, every replay of the agent loop (a restart, a cache eviction, another instance: docs/internals.md
"Live-run cache") reads the session again, now holding the writes of the earlier episodes, and writes the same
items again. :func:`durable_run_kwargs` (called by the durable runner, ``_runner/seam.py``) therefore replaces the
session of a version-2 run with a :class:`DurableSession` that gives every operation the next number of a
per-execution sequence (the same on every replay: submission order of deterministic code) and runs it one of two
ways:

* **Activities** (``SQLiteSession`` with a file path: the activity worker rebuilds it from ``{"class":
  "SQLiteSession", "sessionId", "dbPath", "sessionsTable", "messagesTable"}``): each operation is the activity
  :data:`SESSION_ACTIVITY`. Reads return what the history recorded. Writes (``add_items``, ``pop_item``,
  ``clear_session``) are idempotent: the activity applies a write and records ``(runId, execution, seq)`` with its
  result in the table :data:`LEDGER_TABLE` of the same SQLite file, in one transaction; a retried or repeated
  activity answers from that record and writes nothing.
* **In the orchestration** (``SQLiteSession()`` in memory, any ``SQLiteSession`` subclass in memory, or a session
  wrapped with :func:`in_memory_session`: state that lives in the orchestrator's process and that no activity
  worker can reach): the first operation of a run on the session records the session's items as they are then in
  the history (activity :data:`SESSION_ACTIVITY`, ``op: "record"``, which only echoes its input), so reads before
  the first write return on replay what they returned the first time, even for a session object that outlives
  one execution (a module-level session). From then on the run's view of the session is that snapshot plus the
  run's own writes, applied in order (deterministic); each write is applied to the session object once (per
  object and ``(run, seq)``): replaying a run on a fresh object (created in the orchestrator function) rebuilds its
  state, replaying on the same object changes nothing.

Every other session is refused with ``agents.exceptions.UserError`` saying what to use instead: sessions with
server-side or external state (``OpenAIConversationsSession``, Redis, SQLAlchemy, Dapr, MongoDB, file-backed
``AdvancedSQLiteSession`` / ``AsyncSQLiteSession``), wrappers that call a model or need keys in the orchestrator
(``OpenAIResponsesCompactionSession``, ``EncryptedSession``). Their writes could not be made idempotent from the
orchestrator and their reads are I/O the orchestrator must not do (DESIGN.md "Orchestration rules").

Version-1 runs (started before this existed) keep the session as given, so their histories replay unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sqlite3
import weakref
from contextlib import closing
from pathlib import Path
from typing import Any

from agents.exceptions import UserError
from agents.memory import SessionSettings
from agents.memory.sqlite_session import SQLiteSession

from ._contracts import ToolRetry
from ._errors import DurableAgentsError, NonDeterminismError
from ._run_settings import current_session

__all__ = [
    "LEDGER_TABLE",
    "SESSION_ACTIVITY",
    "SESSION_RETRY",
    "DurableSession",
    "DurableSessionError",
    "durable_run_kwargs",
    "in_memory_session",
    "register_session_activity",
    "run_session_operation",
]

SESSION_ACTIVITY = "durable_agents_session"
"""Name of the activity that runs a session operation (input and output: :func:`run_session_operation`)."""
LEDGER_TABLE = "durable_agents_session_ops"
"""Table of applied writes in a session's SQLite file: ``(run_id, execution, seq)`` -> op, digest, result."""
SESSION_RETRY = ToolRetry(max_attempts=5, first_retry_interval_ms=2000)
"""Retry options of the session activity (5 attempts, 2 s apart); then the run fails."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ALL = 2**62  # "every item": a limit no session reaches (SQLite LIMIT takes a 64-bit integer)
_WRITES = ("add_items", "pop_item", "clear_session")


class DurableSessionError(DurableAgentsError, RuntimeError):
    """A session operation of a durable run failed for good (the session activity failed after
    :data:`SESSION_RETRY`); the run fails. ``op`` is the operation, ``detail`` the activity's failure text."""

    def __init__(self, op: str, detail: str) -> None:
        self.op = op
        self.detail = detail
        super().__init__(f"Session operation {op} failed in the {SESSION_ACTIVITY} activity: {detail}")


# -- which sessions can be made durable, and how --------------------------------------------------------------

_in_memory_marks: weakref.WeakSet[Any] = weakref.WeakSet()


def in_memory_session(session: Any) -> Any:
    """Declare that ``session`` (any object with the SDK's ``Session`` methods) keeps its state in the memory of
    the process that created it, so durable runs may use it in the orchestration (module docstring), and return it.

    Use it only for state that dies with the process: a session that writes to a file, a database or a service
    would get every write of a run once per process that replays the run. Raises ``TypeError`` for an object
    without ``get_items`` / ``add_items`` / ``pop_item`` / ``clear_session`` or that cannot be weakly referenced.
    """
    if not all(callable(getattr(session, name, None)) for name in ("get_items", *_WRITES)):
        raise TypeError("in_memory_session expects an OpenAI Agents SDK Session (get_items, add_items, ...)")
    _in_memory_marks.add(session)
    return session


def _sqlite_file_descriptor(session: Any) -> dict[str, Any] | None:
    """The JSON an activity rebuilds ``session`` from, when it is a file-backed ``SQLiteSession`` (exactly that
    class: subclasses keep more state than its two tables); else ``None``."""
    if type(session) is not SQLiteSession or str(session.db_path) == ":memory:":
        return None
    tables = (session.sessions_table, session.messages_table)
    if not all(isinstance(t, str) and _IDENTIFIER.fullmatch(t) for t in tables):
        return None
    return {"class": "SQLiteSession", "sessionId": str(session.session_id), "dbPath": str(session.db_path),
            "sessionsTable": tables[0], "messagesTable": tables[1]}


def _is_in_memory(session: Any) -> bool:
    if isinstance(session, SQLiteSession):
        return str(session.db_path) == ":memory:"
    try:
        return session in _in_memory_marks
    except TypeError:
        return False


def _refusal(session: Any) -> UserError:
    kind = type(session).__name__
    if kind == "OpenAIConversationsSession":
        why = ("keeps the conversation on OpenAI's servers: its reads and writes would be API calls made by the "
               "orchestrator, again on every replay, and its writes cannot be made idempotent")
    elif callable(getattr(session, "run_compaction", None)) or kind == "EncryptedSession":
        why = ("calls a model or needs keys in the orchestrator (compaction, encryption), which a durable run "
               "cannot replay")
    elif isinstance(session, SQLiteSession):
        why = "is a SQLiteSession subclass with a file: the activity worker rebuilds only SQLiteSession itself"
    else:
        why = "is not one the durable runner can rebuild in an activity or knows to be in memory"
    return UserError(
        f"Session {kind} {why}. Inside a durable run use SQLiteSession(session_id, '<file path>') (its reads and "
        "writes run as the durable_agents_session activity, once each), SQLiteSession(session_id) in memory, or "
        "durable_agents.in_memory_session(your_session) for a session whose state lives only in this process."
    )


def durable_run_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``Runner.run`` keyword arguments of a durable run with its ``session`` made replay-safe.

    Called by the durable runner (``_runner/seam.py``) inside an agent orchestration, before the SDK runs. Returns
    ``kwargs`` unchanged without a session, outside a run, for a version-1 run, or when the session already is a
    :class:`DurableSession`; else a copy whose ``session`` is a :class:`DurableSession` (module docstring). Raises
    ``agents.exceptions.UserError`` for a session that cannot be made durable (the message says what to use).
    """
    session = kwargs.get("session")
    run = current_session()
    if session is None or run is None or isinstance(session, DurableSession):
        return kwargs
    if getattr(run, "version", 1) < 2:
        return kwargs
    descriptor = _sqlite_file_descriptor(session)
    if descriptor is None and not _is_in_memory(session):
        raise _refusal(session)
    return {**kwargs, "session": DurableSession(session, run, descriptor)}


# -- the orchestrator side -----------------------------------------------------------------------------------


class _RunSessions:
    """Per execution of a run's function (one bridge session): the next sequence number and the in-memory views."""

    __slots__ = ("seq", "views")

    def __init__(self) -> None:
        self.seq = 0
        self.views: dict[int, tuple[Any, list[Any]]] = {}  # id(session) -> (session, the run's view of its items)


_runs: weakref.WeakKeyDictionary[Any, _RunSessions] = weakref.WeakKeyDictionary()
_applied: weakref.WeakKeyDictionary[Any, set[tuple[str, str, int]]] = weakref.WeakKeyDictionary()
"""In-memory sessions: the ``(run id, execution, seq)`` of the writes already applied to each session object."""


def _resolve_limit(limit: int | None, settings: SessionSettings | None) -> int | None:
    if limit is None and settings is not None:
        return settings.limit
    return limit


def _tail(items: list[Any], limit: int | None) -> list[Any]:
    """The latest ``limit`` items in order, as ``SQLiteSession.get_items`` reads them (``None`` or negative: all;
    0: none)."""
    if limit is None or limit < 0:
        return copy.deepcopy(items)
    return copy.deepcopy(items[-limit:]) if limit else []


class DurableSession:
    """The session a durable run's SDK code sees in place of the user's (module docstring): an SDK ``Session``.

    ``inner`` is the user's session, ``run`` the run's bridge session (``durable_agents._runner.bridge.Session``:
    ``instance_id``, ``key``, ``call``), ``descriptor`` the JSON the activity rebuilds a file-backed
    ``SQLiteSession`` from (``None``: the session is in memory and handled in the orchestration). ``session_id``
    and ``session_settings`` are the inner session's. Raises :class:`DurableSessionError` when the activity fails
    after :data:`SESSION_RETRY`, and :class:`durable_agents.NonDeterminismError` when the history holds another
    answer than a session operation's at this step.
    """

    def __init__(self, inner: Any, run: Any, descriptor: dict[str, Any] | None) -> None:
        self.inner = inner
        self.session_id: str = inner.session_id
        self.session_settings: SessionSettings | None = getattr(inner, "session_settings", None)
        self._run = run
        self._descriptor = descriptor
        self._state = _runs.setdefault(run, _RunSessions())

    # -- the SDK's Session protocol

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The session's latest ``limit`` items (default the session settings' limit; ``None``: all), oldest first."""
        limit = _resolve_limit(limit, self.session_settings)
        if self._descriptor is not None:
            value = await self._activity("get_items", {"limit": limit})
            if not isinstance(value, list):
                self._mismatch("get_items", value)
            return value
        return _tail(await self._view(), limit)

    async def add_items(self, items: list[Any]) -> None:
        """Append ``items`` (once per run and sequence number)."""
        items = list(items)
        if not items:
            return
        if self._descriptor is not None:
            await self._activity("add_items", {"items": items})
            return
        view = await self._view()
        seq = self._next_seq()
        view.extend(copy.deepcopy(items))
        if self._claim(seq):
            await self.inner.add_items(items)

    async def pop_item(self) -> Any | None:
        """Remove and return the latest item (``None`` when empty), once per run and sequence number."""
        if self._descriptor is not None:
            return await self._activity("pop_item", {})
        view = await self._view()
        seq = self._next_seq()
        item = view.pop() if view else None
        if self._claim(seq):
            await self.inner.pop_item()
        return item

    async def clear_session(self) -> None:
        """Remove every item of the session, once per run and sequence number."""
        if self._descriptor is not None:
            await self._activity("clear_session", {})
            return
        view = await self._view()
        seq = self._next_seq()
        view.clear()
        if self._claim(seq):
            await self.inner.clear_session()

    # -- helpers

    def _next_seq(self) -> int:
        seq = self._state.seq
        self._state.seq += 1
        return seq

    def _run_ids(self) -> tuple[str, str]:
        key = getattr(self._run, "key", None) or (self._run.instance_id, "")
        return str(self._run.instance_id), str(key[1])

    def _claim(self, seq: int) -> bool:
        """True the first time write ``seq`` of this run meets the inner session object (then apply it)."""
        run_id, execution = self._run_ids()
        applied = _applied.get(self.inner)
        if applied is None:
            applied = set()
            _applied[self.inner] = applied
        mark = (run_id, execution, seq)
        if mark in applied:
            return False
        applied.add(mark)
        return True

    async def _view(self) -> list[Any]:
        """The run's view of the in-memory session; the first call of a run records the session's items."""
        entry = self._state.views.get(id(self.inner))
        if entry is not None and entry[0] is self.inner:
            return entry[1]
        current = await self.inner.get_items(limit=_ALL) if self._limited() else await self.inner.get_items()
        recorded = await self._activity("record", {"items": list(current)})
        if not isinstance(recorded, list):
            self._mismatch("record", recorded)
        view = list(recorded)
        self._state.views[id(self.inner)] = (self.inner, view)
        return view

    def _limited(self) -> bool:
        settings = getattr(self.inner, "session_settings", None)
        return settings is not None and getattr(settings, "limit", None) is not None

    async def _activity(self, op: str, fields: dict[str, Any]) -> Any:
        from ._runner.steps import ActivityCall

        run_id, execution = self._run_ids()
        payload = {"op": op, "runId": run_id, "execution": execution, "seq": self._next_seq(),
                   "session": self._descriptor, **fields}
        outcome = await self._run.call(ActivityCall(name=SESSION_ACTIVITY, input=payload, retry=SESSION_RETRY))
        if not outcome.ok:
            raise DurableSessionError(op, outcome.error or "")
        return outcome.value

    def _mismatch(self, op: str, value: Any) -> None:
        raise NonDeterminismError(len(getattr(self._run, "log", ())) - 1, value, SESSION_ACTIVITY,
                                  detail=f"the history holds a result that is not a session {op} result here")


# -- the activity side ---------------------------------------------------------------------------------------


def _digest(payload: dict[str, Any]) -> str:
    body = {k: payload.get(k) for k in ("op", "session", "items")}
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _connect(descriptor: Any) -> tuple[sqlite3.Connection, str, str, str]:
    if not isinstance(descriptor, dict) or descriptor.get("class") != "SQLiteSession":
        raise ValueError(f"{SESSION_ACTIVITY}: unknown session {descriptor!r}")
    session_id, db_path = descriptor.get("sessionId"), descriptor.get("dbPath")
    sessions, messages = descriptor.get("sessionsTable"), descriptor.get("messagesTable")
    if not isinstance(session_id, str) or not isinstance(db_path, str) or db_path == ":memory:":
        raise ValueError(f"{SESSION_ACTIVITY}: a SQLiteSession needs a sessionId and a file dbPath")
    if not all(isinstance(t, str) and _IDENTIFIER.fullmatch(t) for t in (sessions, messages)):
        raise ValueError(f"{SESSION_ACTIVITY}: invalid table names {sessions!r}, {messages!r}")
    assert isinstance(sessions, str) and isinstance(messages, str)
    Path(db_path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    SQLiteSession(session_id, db_path, sessions, messages).close()  # the SDK's own schema (tables, index, WAL)
    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (run_id TEXT NOT NULL, execution TEXT NOT NULL, "
                 "seq INTEGER NOT NULL, op TEXT NOT NULL, digest TEXT NOT NULL, result TEXT, "
                 "PRIMARY KEY (run_id, execution, seq))")
    return conn, session_id, sessions, messages


def _read(conn: sqlite3.Connection, messages: str, session_id: str, limit: int | None) -> list[Any]:
    """``SQLiteSession.get_items`` semantics: oldest first; ``limit`` > 0 the latest N valid items, ``None`` or
    negative all, 0 none; rows that are not JSON are skipped."""
    rows = conn.execute(f"SELECT message_data FROM {messages} WHERE session_id = ? ORDER BY id ASC",
                        (session_id,)).fetchall()
    items = []
    for (data,) in rows:
        try:
            items.append(json.loads(data))
        except (TypeError, ValueError):
            continue
    return _tail(items, limit)


def _pop(conn: sqlite3.Connection, messages: str, session_id: str) -> Any | None:
    while True:
        row = conn.execute(f"SELECT id, message_data FROM {messages} WHERE session_id = ? ORDER BY id DESC LIMIT 1",
                           (session_id,)).fetchone()
        if row is None:
            return None
        conn.execute(f"DELETE FROM {messages} WHERE id = ?", (row[0],))
        try:
            return json.loads(row[1])
        except (TypeError, ValueError):
            continue  # as the SDK: a row that is not JSON is dropped and the next one popped


def run_session_operation(payload: Any) -> Any:
    """The body of the :data:`SESSION_ACTIVITY` activity.

    ``payload``: ``{"op", "runId", "execution", "seq", "session", "items"?, "limit"?}`` (a dict or its JSON text).
    ``op`` ``"record"`` answers ``items`` unchanged (the in-memory snapshot, ``session`` null). The others rebuild a
    file-backed ``SQLiteSession`` from ``session`` (``{"class": "SQLiteSession", "sessionId", "dbPath",
    "sessionsTable", "messagesTable"}``): ``"get_items"`` answers the items (``limit`` as ``SQLiteSession``);
    ``"add_items"`` appends ``items`` and answers ``null``; ``"pop_item"`` answers the removed item or ``null``;
    ``"clear_session"`` answers ``null``. A write is applied together with its ledger row ``(runId, execution,
    seq)`` in one ``BEGIN IMMEDIATE`` transaction; when the row exists the stored answer is returned and nothing is
    written. Raises ``ValueError`` for a malformed payload and when the ledger row of ``(runId, execution, seq)``
    belongs to another operation (the orchestrator's code changed under a run in flight).
    """
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, dict) or not isinstance(payload.get("op"), str):
        raise ValueError(f"{SESSION_ACTIVITY} expects {{'op', 'runId', 'execution', 'seq', 'session', ...}}")
    op = payload["op"]
    if op == "record":
        items = payload.get("items")
        if not isinstance(items, list):
            raise ValueError(f"{SESSION_ACTIVITY}: record needs a list of items")
        return items
    if op not in ("get_items", *_WRITES):
        raise ValueError(f"{SESSION_ACTIVITY}: unknown operation {op!r}")
    conn, session_id, sessions, messages = _connect(payload.get("session"))
    with closing(conn):
        if op == "get_items":
            limit = payload.get("limit")
            return _read(conn, messages, session_id, limit if isinstance(limit, int) else None)
        run_id, execution, seq = str(payload.get("runId")), str(payload.get("execution") or ""), payload.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError(f"{SESSION_ACTIVITY}: seq must be an integer")
        digest = _digest(payload)
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(f"SELECT op, digest, result FROM {LEDGER_TABLE} WHERE run_id = ? AND execution = ? "
                               "AND seq = ?", (run_id, execution, seq)).fetchone()
            if row is not None:
                conn.execute("ROLLBACK")
                if (row[0], row[1]) != (op, digest):
                    raise ValueError(f"{SESSION_ACTIVITY}: write {seq} of run {run_id} was {row[0]} with other "
                                     f"input, now {op}: the orchestrator's code changed under a run in flight")
                return json.loads(row[2]) if row[2] is not None else None
            result: Any = None
            if op == "add_items":
                items = payload.get("items")
                if not isinstance(items, list):
                    raise ValueError(f"{SESSION_ACTIVITY}: add_items needs a list of items")
                conn.execute(f"INSERT OR IGNORE INTO {sessions} (session_id) VALUES (?)", (session_id,))
                conn.executemany(f"INSERT INTO {messages} (session_id, message_data) VALUES (?, ?)",
                                 [(session_id, json.dumps(item)) for item in items])
                conn.execute(f"UPDATE {sessions} SET updated_at = CURRENT_TIMESTAMP WHERE session_id = ?",
                             (session_id,))
            elif op == "pop_item":
                result = _pop(conn, messages, session_id)
            else:
                conn.execute(f"DELETE FROM {messages} WHERE session_id = ?", (session_id,))
                conn.execute(f"DELETE FROM {sessions} WHERE session_id = ?", (session_id,))
            conn.execute(f"INSERT INTO {LEDGER_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                         (run_id, execution, seq, op, digest, json.dumps(result)))
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def register_session_activity(app: Any) -> None:
    """Register :data:`SESSION_ACTIVITY` on ``app`` (a ``df.DFApp`` or ``df.Blueprint``; ``durable_agents.App``
    does it)."""

    def durable_agents_session(payload: Any) -> Any:
        return run_session_operation(payload)

    durable_agents_session.__doc__ = "Durable activity: one session operation of a durable run (idempotent)."
    app.activity_trigger(input_name="payload", activity=SESSION_ACTIVITY)(durable_agents_session)
