"""The extension-side replay of an orchestrator's returned actions (the "shim"), with no I/O.

After the Python orchestrator returns its ``OrchestratorState`` for an episode, the real Durable extension replays the
returned actions through the .NET ``DurableOrchestrationContext`` while DTFx walks the history. That replay assigns
sequence ids, detects nondeterminism, runs retry interceptors and ``Task.WhenAll``/``WhenAny`` with .NET semantics, and
finds the actions that are *new* in this episode. :func:`replay` reproduces it (``durable-functions-protocol.md``
§3.2-3.8, §3.11):

* a tiny single-threaded task system (:class:`_Task`) whose continuations run inline as soon as a task resolves;
* the SHIM coroutine: for V2/V3 it invokes the actions of ``actions[0]`` in order and awaits each one, ignoring its
  failure; then it fails on ``error``, completes on ``isDone``, or waits forever; V1 awaits ``WhenAny`` per set;
* the history loop: ``TaskScheduled``/``TimerCreated``/``SubOrchestrationInstanceCreated``/``EventSent`` must match
  the action with that sequence id (else nondeterminism); completions resolve the open task with that id;
  ``EventRaised`` resolves the most recent waiter for the name (case-insensitive) or is buffered FIFO;
* the outcome: the instance completes only when the SHIM finished **and** no task is open.

Everything is a pure function of ``(history, state, known function names)``, so it is unit-testable against the real
``azure-functions-durable`` orchestrator ``handle``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from .events import ET, compact, parse_time

__all__ = ["NewAction", "Outcome", "Decision", "replay", "unknown_function_message", "MAX_SHORT_TIMER"]

#: Azure Storage ``MaximumDelayTime`` (protocol §2.2, §3.5): the V1/V2 limit for one timer.
MAX_SHORT_TIMER = dt.timedelta(days=6)
#: DTFx ``RetryOptions`` defaults for the members Python never sends (protocol §3.4).
_DEFAULT_MAX_RETRY_INTERVAL = dt.timedelta(days=6)

_KIND_BY_EVENT = {ET.TaskScheduled: "activity", ET.TimerCreated: "timer",
                  ET.SubOrchestrationInstanceCreated: "suborchestration", ET.EventSent: "event_sent"}
_KIND_TEXT = {"activity": "an activity task", "timer": "a durable timer",
              "suborchestration": "a sub-orchestration", "event_sent": "an entity message"}


@dataclass
class NewAction:
    """An action first scheduled in this episode; the host appends its event and dispatches the work.

    ``kind``: ``activity`` (``name``, ``input`` = the action's input JSON text), ``timer`` (``fire_at``),
    ``suborchestration`` (``name``, ``input``, ``instance_id``), ``event_sent`` (``instance_id``, ``name``,
    ``input``). ``id`` is the DTFx sequence id.
    """

    id: int
    kind: str
    name: str | None = None
    input: str | None = None
    fire_at: dt.datetime | None = None
    instance_id: str | None = None


@dataclass
class Outcome:
    """The terminal result of the execution.

    ``kind``: ``completed`` (``result`` = compact JSON text of the output or None), ``failed`` (``result`` =
    ``"Orchestrator function '<name>' failed: <message>"``, ``details`` = ``"Message: <message>, StackTrace: ..."``),
    ``continued_as_new`` (``result`` = serialized new input text), ``terminated`` (``result`` = reason).
    ``event_id`` is the sequence id of the ``ExecutionCompleted``/``ContinueAsNew`` event.
    """

    kind: str
    result: str | None
    event_id: int
    details: str | None = None


@dataclass
class Decision:
    """What one episode decided: new actions (ascending id), the outcome if terminal, the custom status text.

    ``nondeterminism`` holds the details when the outcome is the failure of a nondeterministic replay.
    """

    new_actions: list[NewAction] = field(default_factory=list)
    outcome: Outcome | None = None
    custom_status: str | None = None
    suspended: bool = False
    next_id: int = 0
    open_task_ids: list[int] = field(default_factory=list)
    nondeterminism: _NonDeterminism | None = None


class _NonDeterminism(Exception):
    """The history and the orchestrator's actions disagree at one sequence id (the extension's nondeterminism).

    ``sequence_id``: the id; ``recorded_kind`` / ``recorded_name``: what the history scheduled there (``activity``,
    ``timer``, ``suborchestration`` or ``event_sent``; the event's ``Name`` or None); ``requested``: the code's
    action at that id, or None when the code scheduled nothing there (yet).
    """

    def __init__(self, message: str, *, sequence_id: int, recorded_kind: str, recorded_name: str | None,
                 requested: NewAction | None) -> None:
        super().__init__(message)
        self.sequence_id = sequence_id
        self.recorded_kind = recorded_kind
        self.recorded_name = recorded_name
        self.requested = requested


class _TaskFailure(Exception):
    """A failed durable task as the .NET side sees it (message = Reason)."""


class _Canceled(Exception):
    pass


class _Task:
    """A minimal .NET-like task: resolves once; continuations run inline, in registration order."""

    __slots__ = ("done", "ok", "value", "_callbacks")

    def __init__(self) -> None:
        self.done = False
        self.ok = True
        self.value: Any = None
        self._callbacks: list[Callable[[_Task], None]] = []

    def set(self, ok: bool, value: Any) -> None:
        if self.done:
            return
        self.done, self.ok, self.value = True, ok, value
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(self)

    def on_done(self, cb: Callable[[_Task], None]) -> None:
        if self.done:
            cb(self)
        else:
            self._callbacks.append(cb)


def _spawn(gen: Generator[_Task, Any, Any]) -> _Task:
    """Drive a generator coroutine that yields :class:`_Task` objects; return the task of its result."""
    result = _Task()

    def step(ok: bool, value: Any) -> None:
        while True:
            try:
                awaited = gen.send(value) if ok else gen.throw(value)
            except StopIteration as stop:
                result.set(True, stop.value)
                return
            except _NonDeterminism:
                raise
            except Exception as exc:  # noqa: BLE001 - a coroutine's failure is its task's failure
                result.set(False, exc)
                return
            if awaited.done:
                ok, value = awaited.ok, awaited.value
                continue
            awaited.on_done(lambda t: step(t.ok, t.value))
            return

    step(True, None)
    return result


def _forever() -> _Task:
    return _Task()


def unknown_function_message(name: str, kind: str, known: Iterable[str]) -> str:
    """The extension's ArgumentException text for an unknown function (protocol §3.11, §5.2)."""
    known_list = ", ".join(f"'{n}'" for n in sorted(known))
    return (f"The function '{name}' doesn't exist, is disabled, or is not {kind} function. "
            f"Additional info: The following are the known {kind.split()[-1]} functions: {known_list}.")


class _Replayer:
    def __init__(self, state: dict | None, orchestrator_name: str, instance_id: str, execution_id: str,
                 activities: Iterable[str], orchestrators: Iterable[str], entities: Iterable[str]):
        self.state = state or {}
        self.name = orchestrator_name
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.activities = {n.lower(): n for n in activities}
        self.orchestrators = {n.lower(): n for n in orchestrators}
        self.entities = {n.lower(): n for n in entities}
        self.id_counter = 0
        self.actions_map: dict[int, NewAction] = {}
        self.open_tasks: dict[int, _Task] = {}
        self.waiters: dict[str, list[_Task]] = {}
        self.buffered: dict[str, list[Any]] = {}
        self.now: dt.datetime | None = None
        self.shim: _Task | None = None
        self.can_input: str | None = None
        self.continued = False
        self.suspended = False
        self.parked: list[dict] = []
        self.terminated: str | None = None
        self.is_terminated = False

    # ---- scheduling primitives (each takes the next sequence id) ----
    def _next_id(self) -> int:
        i = self.id_counter
        self.id_counter += 1
        return i

    def schedule_task(self, name: str, input_text: str | None) -> _Task:
        if name.lower() not in self.activities:
            raise ValueError(unknown_function_message(name, "an activity", self.activities.values()))
        i = self._next_id()
        self.actions_map[i] = NewAction(i, "activity", name=name, input=input_text)
        t = self.open_tasks[i] = _Task()
        return t

    def _current_time(self) -> dt.datetime:
        """The orchestration time (the latest ``OrchestratorStarted``); always set once the shim runs."""
        if self.now is None:
            raise RuntimeError("no OrchestratorStarted event before the orchestration ran")
        return self.now

    def create_timer(self, fire_at: dt.datetime, canceled: bool = False) -> _Task:
        i = self._next_id()
        self.actions_map[i] = NewAction(i, "timer", fire_at=fire_at)
        t = _Task()
        if canceled:
            t.set(False, _Canceled("The timer was canceled."))
        else:
            self.open_tasks[i] = t
        return t

    def create_suborch(self, name: str, instance_id: str | None, input_text: str | None) -> _Task:
        if name.lower() not in self.orchestrators:
            raise ValueError(unknown_function_message(name, "an orchestrator", self.orchestrators.values()))
        i = self._next_id()
        child_id = instance_id or f"{self.execution_id}:{i}"
        if child_id == self.instance_id:
            raise ValueError(f"A sub-orchestration can't have the same instance id as its parent: '{child_id}'.")
        if child_id.startswith("@"):
            raise ValueError(f"Orchestration instance ids must not start with @: '{child_id}'.")
        self.actions_map[i] = NewAction(i, "suborchestration", name=name, input=input_text, instance_id=child_id)
        t = self.open_tasks[i] = _Task()
        return t

    # ---- composite .NET behaviours ----
    def _retry(self, options: dict, call: Callable[[], _Task]) -> Generator[_Task, Any, Any]:
        first = dt.timedelta(milliseconds=float(options.get("firstRetryIntervalInMilliseconds", 0)))
        attempts = int(options.get("maxNumberOfAttempts", 1))
        backoff = float(options.get("backoffCoefficient", 1.0) or 1.0)
        max_ms = options.get("maxRetryIntervalInMilliseconds")
        max_interval = dt.timedelta(milliseconds=float(max_ms)) if max_ms else _DEFAULT_MAX_RETRY_INTERVAL
        last: BaseException | None = None
        for attempt in range(max(attempts, 1)):
            try:
                value = yield call()
                return value
            except _NonDeterminism:
                raise
            except Exception as exc:  # noqa: BLE001
                last = exc
            now = self._current_time()
            if attempt + 1 >= attempts:
                yield self.create_timer(now)  # DTFx "dummy timer for back-compat": fires at once
                break
            delay = first * (backoff ** attempt)
            if delay > max_interval:
                delay = max_interval
            yield self.create_timer(now + delay)
        raise last if last is not None else _TaskFailure("retry failed")

    def _when_all(self, tasks: list[_Task]) -> _Task:
        result = _Task()
        if not tasks:
            result.set(True, [])
            return result
        remaining = [len(tasks)]

        def on_child(_: _Task) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                failed = [t for t in tasks if not t.ok]
                result.set(not failed, failed[0].value if failed else [t.value for t in tasks])

        for t in tasks:
            t.on_done(on_child)
        return result

    def _when_any(self, tasks: list[_Task]) -> _Task:
        result = _Task()
        for t in tasks:
            t.on_done(lambda child: result.set(True, child))
        return result

    def _wait_event(self, name: str) -> _Task:
        key = name.lower()
        t = _Task()
        self.waiters.setdefault(key, []).append(t)
        queue = self.buffered.get(key)
        if queue:
            value = queue.pop(0)
            self.waiters[key].remove(t)
            t.set(True, value)
        return t

    def invoke(self, a: dict, v3: bool) -> _Task:
        kind = a.get("actionType")
        if kind == 0:
            return self.schedule_task(a["functionName"], a.get("input"))
        if kind == 1:
            name, inp = a["functionName"], a.get("input")
            return _spawn(self._retry(a.get("retryOptions") or {}, lambda: self.schedule_task(name, inp)))
        if kind == 2:
            return self.create_suborch(a["functionName"], a.get("instanceId"), a.get("input"))
        if kind == 3:
            name, inp, iid = a["functionName"], a.get("input"), a.get("instanceId")
            return _spawn(self._retry(a.get("retryOptions") or {}, lambda: self.create_suborch(name, iid, inp)))
        if kind == 4:
            self.can_input = a.get("input")
            self.continued = True
            t = _Task()
            t.set(True, None)
            return t
        if kind == 5:
            fire_at = parse_time(a["fireAt"])
            if not v3 and self.now is not None and fire_at - self.now > MAX_SHORT_TIMER:
                raise ValueError("The Azure Storage provider supports a maximum of 6 days for time-based delays")
            return self.create_timer(fire_at, canceled=bool(a.get("isCanceled")))
        if kind == 6:
            return self._wait_event(a["externalEventName"])
        if kind in (7, 9, 10):
            raise NotImplementedError("Durable entities are not supported by the local runtime")
        if kind == 8:
            raise NotImplementedError("Durable HTTP (call_http) is not supported by the local runtime")
        if kind == 11:
            return self._when_any([self.invoke(c, v3) for c in a.get("compoundActions") or []])
        if kind == 12:
            return self._when_all([self.invoke(c, v3) for c in a.get("compoundActions") or []])
        raise ValueError(f"Unknown action type {kind!r}")

    def _shim(self) -> Generator[_Task, Any, Any]:
        state = self.state
        schema = state.get("schemaVersion")
        actions = state.get("actions") or []
        if schema is None:  # V1: one await per action set
            for action_set in actions:
                tasks = []
                for a in action_set:
                    t = self.invoke(a, v3=False)
                    if a.get("actionType") not in (4, 9, 10):
                        tasks.append(t)
                if tasks:
                    yield self._when_any(tasks)
        else:
            if len(actions) > 1:
                raise ValueError("Expected exactly one action set for replay schema V2 or later.")
            v3 = schema >= 2
            for a in actions[0] if actions else []:
                t = self.invoke(a, v3=v3)
                try:
                    yield t
                except _NonDeterminism:
                    raise
                except Exception:  # noqa: BLE001,S110 - the shim ignores task failures
                    pass
        if state.get("error"):
            raise _TaskFailure(str(state["error"]))
        if state.get("isDone"):
            return state.get("output")
        yield _forever()

    # ---- history processing ----
    def _check_scheduled(self, ev: dict) -> None:
        kind = _KIND_BY_EVENT[ev["EventType"]]
        eid = ev.get("EventId")
        sequence_id = -1 if eid is None else int(eid)
        a = self.actions_map.get(sequence_id)
        name = ev.get("Name")
        if a is None or a.kind != kind or (
                kind in ("activity", "suborchestration") and (a.name or "").lower() != (name or "").lower()):
            label = f" and name '{name}'" if name else ""
            raise _NonDeterminism(
                f"Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
                f"{_KIND_TEXT[kind]} with sequence ID {eid}{label}, but the current replay execution hasn't "
                f"(yet?) scheduled this task. Was a change made to the orchestrator code after this instance "
                f"had already started running?",
                sequence_id=sequence_id, recorded_kind=kind, recorded_name=name, requested=a)
        del self.actions_map[sequence_id]

    def _resolve(self, task_id: int | None, ok: bool, value: Any) -> None:
        t = self.open_tasks.pop(task_id, None) if task_id is not None else None
        if t is not None:
            t.set(ok, value)

    def _process(self, ev: dict) -> None:
        et = ev["EventType"]
        if self.suspended and et not in (ET.ExecutionResumed, ET.ExecutionTerminated, ET.OrchestratorStarted,
                                         ET.OrchestratorCompleted, ET.TaskScheduled, ET.TimerCreated,
                                         ET.SubOrchestrationInstanceCreated, ET.EventSent):
            self.parked.append(ev)
            return
        if et == ET.OrchestratorStarted:
            ts = parse_time(ev["Timestamp"])
            self.now = ts if self.now is None or ts > self.now else self.now
        elif et == ET.ExecutionStarted:
            if self.shim is None:
                self.shim = _spawn(self._shim())
        elif et in _KIND_BY_EVENT:
            self._check_scheduled(ev)
        elif et in (ET.TaskCompleted, ET.SubOrchestrationInstanceCompleted):
            self._resolve(ev.get("TaskScheduledId"), True, ev.get("Result"))
        elif et in (ET.TaskFailed, ET.SubOrchestrationInstanceFailed):
            self._resolve(ev.get("TaskScheduledId"), False, _TaskFailure(ev.get("Reason") or ""))
        elif et == ET.TimerFired:
            self._resolve(ev.get("TimerId"), True, None)
        elif et == ET.EventRaised:
            key = (ev.get("Name") or "").lower()
            stack = self.waiters.get(key)
            if stack:
                stack.pop().set(True, ev.get("Input"))
            else:
                self.buffered.setdefault(key, []).append(ev.get("Input"))
        elif et == ET.ExecutionTerminated:
            self.is_terminated = True
            self.terminated = ev.get("Input")
        elif et == ET.ExecutionSuspended:
            self.suspended = True
        elif et == ET.ExecutionResumed:
            self.suspended = False
            parked, self.parked = self.parked, []
            for p in parked:
                self._process(p)

    def run(self, history: list[dict]) -> Decision:
        decision = Decision()
        status = self.state.get("customStatus")
        decision.custom_status = None if status is None else compact(status)
        try:
            for ev in history:
                self._process(ev)
                if self.is_terminated:
                    break
        except _NonDeterminism as exc:
            decision.outcome = self._failed(str(exc))
            decision.nondeterminism = exc
            return decision
        decision.suspended = self.suspended
        decision.next_id = self.id_counter
        if self.is_terminated:
            decision.outcome = Outcome("terminated", self.terminated, self.id_counter)
            return decision
        if not self.suspended:
            decision.new_actions = [self.actions_map[i] for i in sorted(self.actions_map)]
        decision.open_task_ids = sorted(self.open_tasks)
        shim = self.shim
        if shim is not None and shim.done and not self.open_tasks and not self.suspended:
            if not shim.ok:
                decision.outcome = self._failed(str(shim.value))
            elif self.continued:
                decision.outcome = Outcome("continued_as_new", compact(self.can_input), self.id_counter)
            else:
                out = shim.value
                decision.outcome = Outcome("completed", None if out is None else compact(out), self.id_counter)
        return decision

    def _failed(self, message: str) -> Outcome:
        return Outcome("failed", f"Orchestrator function '{self.name}' failed: {message}", self.id_counter,
                       details=f"Message: {message}, StackTrace: ")


def replay(history: list[dict], state: dict | None, *, orchestrator_name: str, instance_id: str,
           execution_id: str, activities: Iterable[str] = (), orchestrators: Iterable[str] = (),
           entities: Iterable[str] = ()) -> Decision:
    """Replay ``state`` (the orchestrator's returned ``OrchestratorState`` dict) against ``history``.

    ``history`` is the full event list of the current execution including this episode's ``OrchestratorStarted``
    and new message events (dicts shaped as in :mod:`local_runtime.events`), but not yet the events of new actions.
    ``activities``/``orchestrators``/``entities`` are the known Durable names (compared case-insensitively); an
    unknown name fails the orchestration like the extension's ArgumentException (protocol §3.11).
    Returns a :class:`Decision`; never raises for orchestration-level problems (they become a ``failed`` outcome).
    """
    return _Replayer(state, orchestrator_name, instance_id, execution_id, activities, orchestrators,
                     entities).run(history)


def parse_state(text: str) -> dict:
    """Parse the orchestrator's returned JSON string (or dict) into the state dict."""
    return text if isinstance(text, dict) else json.loads(text)
