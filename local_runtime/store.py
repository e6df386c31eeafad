"""SQLite persistence of instances, histories, messages and activity work items (WAL mode).

Tables:

* ``instances``: one row per instance: name, current ``execution_id``, runtime status name, input/output/custom status
  texts (as stored in history), created/updated times (microseconds since the epoch, UTC), parent link.
* ``history``: the events (JSON text) of each instance's *current* execution, in order.
* ``messages``: the instance's inbox: events not yet processed (``ExecutionStarted``, ``TaskCompleted``,
  ``TimerFired`` …) with ``visible_at`` (µs; a timer's ``FireAt``). ``execution_id`` is set for results that belong to
  one execution (stale ones are dropped), NULL for instance-level messages (external events, terminate, …).
* ``work``: activity work items dispatched but without a recorded result. A row disappears in the same transaction
  that records the result message, so after a crash exactly the in-flight activities run again.
* ``instance_order``: one ``seq`` per instance id ever created, assigned the first time the id is created and never
  changed or deleted (not by a replace, not by a purge). ``GET instances/`` pages walk this order, so a page token
  names a fixed position and no id is listed twice in one walk (:meth:`Store.query`).

Creating an instance (client start, restart with the same id, a sub-orchestration) refuses to replace an instance
that is Pending, Running, Suspended or ContinuedAsNew (:data:`ACTIVE`; the extension's default
``overridableExistingInstanceStates: NonRunningStates``): the check and the write are one ``BEGIN IMMEDIATE``
transaction, so of concurrent starts of one id exactly one wins.

One :meth:`Store.commit_episode` transaction appends an episode's events, consumes its messages and enqueues the new
work. All methods are synchronous and must be called from one thread (the runtime's event loop thread).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Store", "Instance", "Message", "WorkItem", "TERMINAL", "ACTIVE", "InstanceExistsError"]

TERMINAL = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
#: The states an existing instance must not be replaced in: DTFx ``OverridableStates.NonRunningStates`` dedupe list
#: (azure-functions-durable-extension ``OverridableStates.cs``), the extension's default since 2.x.
ACTIVE = frozenset({"Pending", "Running", "Suspended", "ContinuedAsNew"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    parent_instance_id TEXT,
    parent_execution_id TEXT,
    parent_task_id INTEGER
);
CREATE INDEX IF NOT EXISTS instances_created ON instances(created_us);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    visible_us INTEGER NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_due ON messages(visible_us);
CREATE INDEX IF NOT EXISTS messages_instance ON messages(instance_id, id);
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT
);
CREATE INDEX IF NOT EXISTS work_instance ON work(instance_id);
CREATE TABLE IF NOT EXISTS instance_order (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL UNIQUE
);
"""


class InstanceExistsError(Exception):
    """An instance with this id exists in an :data:`ACTIVE` state, so it was not replaced.

    ``instance_id`` and ``status`` (its runtime status name) say which. The Durable HTTP API answers it like the
    extension answers DTFx's ``OrchestrationAlreadyExistsException`` (``str(exc)`` is that exception's message on
    the Azure Storage backend: ``An Orchestration instance with the status Running already exists.``).
    """

    def __init__(self, instance_id: str, status: str):
        super().__init__(f"An Orchestration instance with the status {status} already exists.")
        self.instance_id = instance_id
        self.status = status


@dataclass
class Instance:
    """A row of ``instances``."""

    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_us: int
    updated_us: int
    parent_instance_id: str | None
    parent_execution_id: str | None
    parent_task_id: int | None


@dataclass
class Message:
    """A row of ``messages`` with its event decoded."""

    id: int
    instance_id: str
    execution_id: str | None
    visible_us: int
    event: dict


@dataclass
class WorkItem:
    """A row of ``work``: one activity execution to run (``input`` = the action's input JSON text)."""

    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


class Store:
    """The SQLite state file. ``path`` is created (with parent folders) if missing."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        # state files written before instance_order existed: give their instances a position (oldest first)
        self.db.execute("INSERT OR IGNORE INTO instance_order (instance_id) SELECT instance_id FROM instances "
                        "ORDER BY created_us, instance_id")

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    # ---- reads ----
    def instance(self, instance_id: str) -> Instance | None:
        """The instance row, or None."""
        row = self.db.execute("SELECT * FROM instances WHERE instance_id=?", (instance_id,)).fetchone()
        return Instance(**dict(row)) if row else None

    def history(self, instance_id: str) -> list[dict]:
        """The current execution's events, in order."""
        rows = self.db.execute("SELECT event FROM history WHERE instance_id=? ORDER BY seq", (instance_id,))
        return [json.loads(r[0]) for r in rows]

    def due_messages(self, instance_id: str, now_us: int) -> list[Message]:
        """The instance's messages visible at ``now_us``, in arrival order."""
        rows = self.db.execute("SELECT * FROM messages WHERE instance_id=? AND visible_us<=? ORDER BY id",
                               (instance_id, now_us))
        return [Message(r["id"], r["instance_id"], r["execution_id"], r["visible_us"], json.loads(r["event"]))
                for r in rows]

    def due_instances(self, now_us: int) -> list[str]:
        """Ids of instances with at least one visible message, oldest message first."""
        rows = self.db.execute("SELECT instance_id, MIN(id) AS m FROM messages WHERE visible_us<=? "
                               "GROUP BY instance_id ORDER BY m", (now_us,))
        return [r[0] for r in rows]

    def next_visible_us(self, now_us: int) -> int | None:
        """The earliest ``visible_us`` in the future, or None."""
        row = self.db.execute("SELECT MIN(visible_us) FROM messages WHERE visible_us>?", (now_us,)).fetchone()
        return row[0]

    def work_items(self) -> list[WorkItem]:
        """Every activity work item without a recorded result."""
        return [WorkItem(**dict(r)) for r in self.db.execute("SELECT * FROM work ORDER BY id")]

    def query(self, *, created_from: int | None = None, created_to: int | None = None,
              statuses: list[str] | None = None, prefix: str | None = None,
              after: int | None = None, limit: int | None = None) -> list[tuple[int, Instance]]:
        """Instances filtered by creation time (µs, inclusive), status names and id prefix, as ``(seq, instance)``
        pairs in ``instance_order.seq`` order (the order ids were first created). ``after``: only ``seq > after``
        (a page token's position); ``limit``: at most this many rows."""
        sql = "SELECT o.seq AS seq, i.* FROM instances i JOIN instance_order o ON o.instance_id=i.instance_id WHERE 1=1"
        args: list[int | str] = []
        if created_from is not None:
            sql += " AND i.created_us>=?"
            args.append(created_from)
        if created_to is not None:
            sql += " AND i.created_us<=?"
            args.append(created_to)
        if statuses:
            sql += f" AND i.status IN ({','.join('?' * len(statuses))})"
            args.extend(statuses)
        if prefix:
            sql += " AND substr(i.instance_id, 1, ?)=?"
            args.extend([len(prefix), prefix])
        if after is not None:
            sql += " AND o.seq>?"
            args.append(after)
        sql += " ORDER BY o.seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        out = []
        for r in self.db.execute(sql, args):
            row = dict(r)
            seq = row.pop("seq")
            out.append((seq, Instance(**row)))
        return out

    # ---- writes ----
    def _tx(self):
        return _Tx(self.db)

    def create_instance(self, inst: Instance, started_event: dict, visible_us: int) -> None:
        """Create an instance in Pending state and enqueue its ``ExecutionStarted`` message; an existing instance
        in a finished state is replaced (its history, messages and work purged).

        Raises :class:`InstanceExistsError` (and writes nothing) when the id exists in an :data:`ACTIVE` state;
        check and write are one transaction."""
        with self._tx() as db:
            self._create(db, inst, started_event, visible_us)

    @staticmethod
    def _active_status(db: sqlite3.Connection, instance_id: str) -> str | None:
        row = db.execute("SELECT status FROM instances WHERE instance_id=?", (instance_id,)).fetchone()
        return row[0] if row and row[0] in ACTIVE else None

    @classmethod
    def _create(cls, db: sqlite3.Connection, inst: Instance, started_event: dict, visible_us: int) -> None:
        status = cls._active_status(db, inst.instance_id)
        if status is not None:
            raise InstanceExistsError(inst.instance_id, status)
        db.execute("INSERT OR IGNORE INTO instance_order (instance_id) VALUES (?)", (inst.instance_id,))
        for table in ("history", "messages", "work"):
            db.execute(f"DELETE FROM {table} WHERE instance_id=?", (inst.instance_id,))
        db.execute("INSERT OR REPLACE INTO instances VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (inst.instance_id, inst.name, inst.execution_id, inst.status, inst.input, inst.output,
                    inst.custom_status, inst.created_us, inst.updated_us, inst.parent_instance_id,
                    inst.parent_execution_id, inst.parent_task_id))
        db.execute("INSERT INTO messages (instance_id, execution_id, visible_us, event) VALUES (?,?,?,?)",
                   (inst.instance_id, inst.execution_id, visible_us, json.dumps(started_event)))

    def send(self, instance_id: str, event: dict, visible_us: int, execution_id: str | None = None) -> None:
        """Enqueue one message for an instance."""
        with self._tx() as db:
            db.execute("INSERT INTO messages (instance_id, execution_id, visible_us, event) VALUES (?,?,?,?)",
                       (instance_id, execution_id, visible_us, json.dumps(event)))

    def drop_messages(self, ids: list[int]) -> None:
        """Delete messages by id."""
        with self._tx() as db:
            db.executemany("DELETE FROM messages WHERE id=?", [(i,) for i in ids])

    def complete_work(self, work_id: int, instance_id: str, execution_id: str, event: dict, now_us: int) -> bool:
        """Record an activity result: delete the work item and enqueue its result message, atomically.

        Returns False (and records nothing) if the work item no longer exists (instance finished or purged).
        """
        with self._tx() as db:
            cur = db.execute("DELETE FROM work WHERE id=?", (work_id,))
            if cur.rowcount == 0:
                return False
            db.execute("INSERT INTO messages (instance_id, execution_id, visible_us, event) VALUES (?,?,?,?)",
                       (instance_id, execution_id, now_us, json.dumps(event)))
            return True

    def commit_episode(self, *, instance_id: str, consumed: list[int], append: list[dict], reset_history: bool,
                       updates: dict[str, Any], work: list[tuple], messages: list[tuple],
                       children: list[tuple[Instance, dict, Callable[[str], tuple]]],
                       finished: bool) -> list[int]:
        """One episode's transaction.

        ``append``: events to add to the history (after deleting it when ``reset_history``, for continue-as-new).
        ``updates``: instance columns to set. ``work``: ``(execution_id, task_id, name, input)`` activity items.
        ``messages``: ``(instance_id, execution_id, visible_us, event)`` to enqueue (timers, parent notices, the
        next execution's start). ``children``: ``(instance, start event, refusal)``: sub-orchestration instances
        to create; when a child's id exists in an :data:`ACTIVE` state it is left alone and ``refusal(status)``
        (a message tuple like those of ``messages``: the parent's ``SubOrchestrationInstanceFailed``) is enqueued
        instead.
        ``finished``: the instance reached a terminal state, so its remaining messages and work items are dropped
        before ``messages`` are enqueued. Returns the ids of the new work items.
        """
        work_ids: list[int] = []
        with self._tx() as db:
            db.executemany("DELETE FROM messages WHERE id=?", [(i,) for i in consumed])
            if reset_history:
                db.execute("DELETE FROM history WHERE instance_id=?", (instance_id,))
            if finished:
                db.execute("DELETE FROM messages WHERE instance_id=?", (instance_id,))
                db.execute("DELETE FROM work WHERE instance_id=?", (instance_id,))
            row = db.execute("SELECT COALESCE(MAX(seq), -1) FROM history WHERE instance_id=?",
                             (instance_id,)).fetchone()
            seq = row[0] + 1
            db.executemany("INSERT INTO history VALUES (?,?,?)",
                           [(instance_id, seq + i, json.dumps(e)) for i, e in enumerate(append)])
            if updates:
                cols = ", ".join(f"{k}=?" for k in updates)
                db.execute(f"UPDATE instances SET {cols} WHERE instance_id=?", (*updates.values(), instance_id))
            for execution_id, task_id, name, input_text in work:
                cur = db.execute("INSERT INTO work (instance_id, execution_id, task_id, name, input) "
                                 "VALUES (?,?,?,?,?)", (instance_id, execution_id, task_id, name, input_text))
                work_ids.append(cur.lastrowid)
            for child, started, refusal in children:
                status = self._active_status(db, child.instance_id)
                if status is not None:
                    m_iid, m_exec, m_visible, m_event = refusal(status)
                    db.execute("INSERT INTO messages (instance_id, execution_id, visible_us, event) "
                               "VALUES (?,?,?,?)", (m_iid, m_exec, m_visible, json.dumps(m_event)))
                    continue
                self._create(db, child, started, child.created_us)
            db.executemany("INSERT INTO messages (instance_id, execution_id, visible_us, event) VALUES (?,?,?,?)",
                           [(i, e, v, json.dumps(ev)) for i, e, v, ev in messages])
        return work_ids

    def update_instance(self, instance_id: str, **updates: Any) -> None:
        """Set instance columns."""
        with self._tx() as db:
            cols = ", ".join(f"{k}=?" for k in updates)
            db.execute(f"UPDATE instances SET {cols} WHERE instance_id=?", (*updates.values(), instance_id))

    def purge(self, instance_ids: list[str]) -> int:
        """Delete instances with their history, messages and work. Returns how many instances were deleted."""
        n = 0
        with self._tx() as db:
            for iid in instance_ids:
                n += db.execute("DELETE FROM instances WHERE instance_id=?", (iid,)).rowcount
                for table in ("history", "messages", "work"):
                    db.execute(f"DELETE FROM {table} WHERE instance_id=?", (iid,))
        return n


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
