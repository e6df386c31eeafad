"""A small, faithful in-process emulation of the Durable extension for orchestrator unit tests.

It drives a real ``azure-functions-durable`` orchestrator function episode by episode exactly as the extension
does (shared/docs/durable-functions-protocol.md §2-3): it builds the context JSON (history events in the
extension's PascalCase shape, ``upperSchemaVersion`` 1 / ``upperSchemaVersionNew`` 2 → replay schema V3), calls
the registered function through the DFApp wrapper, parses the returned ``OrchestratorState`` (or the
``$OutOfProcData$`` of a raised error), and replays the returned actions with the C# semantics of §3.2 (sequence
ids in the order the .NET side invokes them, ``WhenAll`` not fail-fast, retry interceptor timers, cancelled
timers) to find the new actions. New activities run in-process through the app's registered activity functions
(``ActivityTriggerConverter`` in and out, failures as ``TaskFailed`` with the extension's ``Reason`` text);
timers fire on a virtual clock; external events are raised by the test.

Simplifications (none visible to the SDK): a virtual clock; all due messages of an instance go into one episode
(or one per episode with ``one_message_per_episode``); no sub-orchestrations, entities, suspend or
continue-as-new.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import inspect
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func
from azure.functions.durable_functions import ActivityTriggerConverter
from azure.functions.meta import Datum

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# History event types (protocol §2.3)
EXECUTION_STARTED, EXECUTION_COMPLETED = 0, 1
TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 4, 5, 6
TIMER_CREATED, TIMER_FIRED = 10, 11
ORCHESTRATOR_STARTED, ORCHESTRATOR_COMPLETED = 12, 13
EVENT_RAISED = 15


def _ts(value: dt.datetime) -> str:
    text = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def _parse_time(text: str) -> dt.datetime:
    text = text.replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text)


def _compact(text: str | None) -> str | None:
    """The extension re-serialises JSON results compactly (protocol §1)."""
    if text is None:
        return None
    value = json.loads(text)
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Fut:
    """A .NET-Task-like future for the shadow replay (callbacks run inline, in order)."""

    def __init__(self) -> None:
        self.done = False
        self.failed = False
        self.value: Any = None
        self._callbacks: list[Callable[[_Fut], None]] = []

    def on_done(self, callback: Callable[[_Fut], None]) -> None:
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def resolve(self, value: Any = None, failed: bool = False) -> None:
        if self.done:
            return
        self.done, self.failed, self.value = True, failed, value
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)


@dataclasses.dataclass
class _NewAction:
    id: int
    kind: str  # "task" | "timer"
    name: str | None = None
    input: str | None = None
    fire_at: dt.datetime | None = None


class _ShadowReplay:
    """Protocol §3.2: replay the returned actions against the history the way the C# shim does."""

    def __init__(self, history: list[dict[str, Any]], state: dict[str, Any]) -> None:
        self.history = history
        self.state = state
        self.id_counter = 0
        self.actions_map: dict[int, _NewAction] = {}
        self.open_tasks: dict[int, _Fut] = {}
        self.waiters: dict[str, list[_Fut]] = {}
        self.buffered: dict[str, list[Any]] = {}
        self.now: dt.datetime | None = None
        self.shim_finished = False
        self.nondeterminism: str | None = None

    # --- primitives
    def schedule_task(self, name: str, input_text: str | None) -> _Fut:
        task_id = self.id_counter
        self.id_counter += 1
        self.actions_map[task_id] = _NewAction(task_id, "task", name=name, input=input_text)
        fut = _Fut()
        self.open_tasks[task_id] = fut
        return fut

    def create_timer(self, fire_at: dt.datetime, cancelled: bool = False) -> _Fut:
        timer_id = self.id_counter
        self.id_counter += 1
        self.actions_map[timer_id] = _NewAction(timer_id, "timer", fire_at=fire_at)
        fut = _Fut()
        if cancelled:
            fut.resolve(None, failed=True)  # TaskCanceledException; the shim ignores it
        else:
            self.open_tasks[timer_id] = fut
        return fut

    def invoke(self, action: dict[str, Any]) -> _Fut:
        kind = action["actionType"]
        if kind == 0:
            return self.schedule_task(action["functionName"], action.get("input"))
        if kind == 1:
            return self._retry(action)
        if kind == 5:
            return self.create_timer(_parse_time(action["fireAt"]), bool(action.get("isCanceled")))
        if kind == 6:
            fut = _Fut()
            name = action["externalEventName"]
            self.waiters.setdefault(name, []).append(fut)
            if self.buffered.get(name):
                self.waiters[name].remove(fut)
                fut.resolve(self.buffered[name].pop(0))
            return fut
        if kind in (11, 12):
            children = [self.invoke(child) for child in action["compoundActions"]]
            result = _Fut()
            if not children:
                result.resolve([])
                return result
            if kind == 11:
                for child in children:
                    child.on_done(lambda c: result.resolve(c))
            else:
                def check(_c: _Fut) -> None:
                    if all(ch.done for ch in children):
                        first_failure = next((ch for ch in children if ch.failed), None)
                        result.resolve(first_failure.value if first_failure else None, failed=bool(first_failure))

                for child in children:
                    child.on_done(check)
            return result
        raise NotImplementedError(f"actionType {kind} is not emulated")

    def _retry(self, action: dict[str, Any]) -> _Fut:
        options = action["retryOptions"]
        max_attempts = options["maxNumberOfAttempts"]
        first = options["firstRetryIntervalInMilliseconds"]
        coefficient = options.get("backoffCoefficient", 1)
        result = _Fut()
        attempt = {"n": 0}

        def start() -> None:
            self.schedule_task(action["functionName"], action.get("input"))
            fut = self.open_tasks[self.id_counter - 1]
            fut.on_done(after)

        def after(fut: _Fut) -> None:
            if not fut.failed:
                result.resolve(fut.value)
                return
            attempt["n"] += 1
            if attempt["n"] >= max_attempts:
                timer = self.create_timer(self.now)
                timer.on_done(lambda _t: result.resolve(fut.value, failed=True))
                return
            delay = dt.timedelta(milliseconds=first * coefficient ** (attempt["n"] - 1))
            timer = self.create_timer(self.now + delay)
            timer.on_done(lambda _t: start())

        start()
        return result

    # --- the shim coroutine, as a callback chain
    def start_shim(self) -> None:
        actions = self.state.get("actions") or [[]]
        flat = actions[0] if actions else []
        index = {"i": 0}

        def next_action(_f: _Fut | None = None) -> None:
            if index["i"] >= len(flat):
                self.shim_finished = True
                return
            action = flat[index["i"]]
            index["i"] += 1
            self.invoke(action).on_done(next_action)

        next_action()

    def run(self) -> None:
        for event in self.history:
            etype = event["EventType"]
            if etype == ORCHESTRATOR_STARTED:
                self.now = _parse_time(event["Timestamp"])
            elif etype == EXECUTION_STARTED:
                self.start_shim()
            elif etype in (TASK_SCHEDULED, TIMER_CREATED):
                expected = "task" if etype == TASK_SCHEDULED else "timer"
                action = self.actions_map.get(event["EventId"])
                if action is None or action.kind != expected or (
                    expected == "task" and action.name.lower() != event["Name"].lower()
                ):
                    self.nondeterminism = f"Non-Deterministic workflow detected at event id {event['EventId']}"
                    return
                del self.actions_map[event["EventId"]]
            elif etype == TASK_COMPLETED:
                fut = self.open_tasks.pop(event["TaskScheduledId"], None)
                if fut:
                    fut.resolve(event["Result"])
            elif etype == TASK_FAILED:
                fut = self.open_tasks.pop(event["TaskScheduledId"], None)
                if fut:
                    fut.resolve(event["Reason"], failed=True)
            elif etype == TIMER_FIRED:
                fut = self.open_tasks.pop(event["TimerId"], None)
                if fut:
                    fut.resolve(None)
            elif etype == EVENT_RAISED:
                stack = self.waiters.get(event["Name"]) or []
                if stack:
                    stack.pop().resolve(event["Input"])
                else:
                    self.buffered.setdefault(event["Name"], []).append(event["Input"])


@dataclasses.dataclass
class _Message:
    due: dt.datetime
    event: dict[str, Any]
    order: int


@dataclasses.dataclass
class Instance:
    """One orchestration instance in the emulator."""

    instance_id: str
    name: str
    input_text: str | None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    status: str = "Pending"
    output: Any = None
    custom_status: Any = None
    messages: list[_Message] = dataclasses.field(default_factory=list)
    episodes: int = 0
    episode_actions: list[list[dict[str, Any]]] = dataclasses.field(default_factory=list)
    last_state: str | None = None  # the OrchestratorState JSON the last invocation returned
    failed_commits: int = 0
    custom_statuses: list[Any] = dataclasses.field(default_factory=list)
    cpu_seconds: float = 0.0  # thread CPU of the orchestrator invocations (the calling thread only)
    invocation_process_cpu_seconds: float = 0.0  # process CPU (all threads) during the orchestrator invocations


class ReplayHarness:
    """Drives orchestrations of a ``df.DFApp`` (or blueprints registered on one) through episodes.

    ``harness.start("support", {"agent": ..., "input": ...})`` creates an instance; ``run()`` processes due
    messages (activities complete at once, timers fire when the virtual clock reaches them when
    ``advance_timers`` is true); ``raise_event(id, name, data)`` queues an external event the way the Python
    client encodes it (double JSON encoding, protocol §1). Every new history event is recorded, so tests can
    assert what each episode scheduled (``instance.episode_actions``).
    """

    def __init__(self, app: Any, *, one_message_per_episode: bool = False,
                 after_invocation: Callable[[], None] | None = None) -> None:
        """``after_invocation`` runs right after each orchestrator invocation, inside its CPU measurement (the
        benchmark uses it to wait for workers that unwind after the invocation returned)."""
        self.after_invocation = after_invocation
        self.failing_commits = 0  # the next N episodes run the orchestrator but their commit "fails"
        functions = app.get_functions()
        self.orchestrators: dict[str, Any] = {}
        self.activities: dict[str, tuple[Any, str]] = {}
        for function in functions:
            trigger = function.get_trigger()
            raw = json.loads(function.get_raw_bindings()[0])
            if raw["type"] == "orchestrationTrigger":
                self.orchestrators[raw.get("orchestration") or function.get_function_name()] = function
            elif raw["type"] == "activityTrigger":
                self.activities[(raw.get("activity") or function.get_function_name()).lower()] = (
                    function,
                    trigger.name,
                )
        self.instances: dict[str, Instance] = {}
        self.clock = EPOCH
        self.one_message_per_episode = one_message_per_episode
        self._order = 0
        self.activity_calls: list[tuple[str, Any]] = []

    # --- client-side operations
    def start(self, name: str, value: Any, instance_id: str | None = None) -> Instance:
        """Start an orchestration the way the Python client does: input ``df_dumps`` once, stored as JSON text."""
        instance_id = instance_id or uuid.uuid4().hex
        input_text = json.dumps(json.dumps(value))  # ExecutionStarted.Input: JSON text of a JSON string (§1)
        instance = Instance(instance_id, name, input_text)
        self.instances[instance_id] = instance
        self._queue(
            instance,
            self.clock,
            {
                "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": uuid.uuid4().hex},
                "EventType": EXECUTION_STARTED,
                "ParentInstance": None,
                "Name": name,
                "Version": "",
                "Input": input_text,
                "Tags": None,
                "Correlation": None,
                "ParentTraceContext": None,
                "ScheduledStartTime": None,
                "Generation": None,
                "GenerateNewTrace": False,
                "EventId": -1,
                "IsPlayed": False,
            },
        )
        return instance

    def raise_event(self, instance_id: str, name: str, data: Any) -> None:
        """``DurableOrchestrationClient.raise_event``: the orchestrator receives ``json.dumps(data)`` (a str)."""
        instance = self.instances[instance_id]
        text = json.dumps(json.dumps(data))
        self._queue(
            instance,
            self.clock,
            {"EventType": EVENT_RAISED, "Name": name, "Input": text, "ParentTraceContext": None, "EventId": -1,
             "IsPlayed": False},
        )

    def _queue(self, instance: Instance, due: dt.datetime, event: dict[str, Any]) -> None:
        self._order += 1
        instance.messages.append(_Message(due, event, self._order))

    # --- the dispatcher
    def run(self, *, advance_timers: bool = True, max_episodes: int = 10_000) -> None:
        """Run episodes until no message is due (advancing the virtual clock to timers if allowed)."""
        for _ in range(max_episodes):
            if not self.step(advance_timers=advance_timers):
                return
        raise RuntimeError("too many episodes")

    def step(self, *, advance_timers: bool = True) -> bool:
        """Run one round of episodes (one per instance with due messages); False when nothing is left to do."""
        for _ in range(2):
            progressed = False
            for instance in list(self.instances.values()):
                if instance.status in ("Completed", "Failed", "Terminated"):
                    instance.messages.clear()
                    continue
                due = sorted((m for m in instance.messages if m.due <= self.clock), key=lambda m: (m.due, m.order))
                if due:
                    if self.one_message_per_episode:
                        due = due[:1]
                    for message in due:
                        instance.messages.remove(message)
                    self._episode(instance, [m.event for m in due])
                    progressed = True
            if progressed:
                return True
            pending = [m.due for i in self.instances.values() for m in i.messages
                       if i.status not in ("Completed", "Failed", "Terminated")]
            if not pending or not advance_timers:
                return False
            self.clock = max(self.clock, min(pending))
        return False

    def _episode(self, instance: Instance, events: list[dict[str, Any]]) -> None:
        self.clock += dt.timedelta(milliseconds=1)
        now = self.clock
        for event in events:
            event.setdefault("Timestamp", _ts(now))
        started_index = len(instance.history)
        instance.history.append({"EventType": ORCHESTRATOR_STARTED, "EventId": -1, "IsPlayed": False,
                                 "Timestamp": _ts(now)})
        instance.history.extend(events)
        if instance.status == "Pending":
            instance.status = "Running"
        body = {
            "history": [
                dict(e, IsPlayed=(i < started_index and e["EventType"] != ORCHESTRATOR_STARTED))
                for i, e in enumerate(instance.history)
            ],
            "input": json.loads(instance.input_text) if instance.input_text is not None else None,
            "instanceId": instance.instance_id,
            "isReplaying": started_index > 0,
            "parentInstanceId": None,
            "upperSchemaVersion": 1,
            "upperSchemaVersionNew": 2,
            "longRunningTimerIntervalDuration": "3.00:00:00",
            "maximumShortTimerDuration": "6.00:00:00",
            "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
        }
        function = self.orchestrators[instance.name]
        user_fn = function.get_user_function()
        request = func.OrchestrationContext(json.dumps(body))
        cpu_start = time.thread_time()
        process_cpu_start = time.process_time()
        try:
            try:
                returned = user_fn(context=request)
            finally:
                if self.after_invocation is not None:
                    self.after_invocation()
            instance.cpu_seconds += time.thread_time() - cpu_start
            instance.invocation_process_cpu_seconds += time.process_time() - process_cpu_start
            state = json.loads(returned)
        except Exception as exc:  # the SDK raises with the state after a label (protocol §2.1)
            text = str(exc)
            label = "$OutOfProcData$:"
            if label not in text:
                raise
            instance.cpu_seconds += time.thread_time() - cpu_start
            instance.invocation_process_cpu_seconds += time.process_time() - process_cpu_start
            state = json.loads(text.split(label, 1)[1])
        instance.last_state = json.dumps(state)
        if self.failing_commits > 0:
            # The worker ran the episode but the extension could not commit it (e.g. a storage error): nothing
            # of it is kept, the messages go back to the queue and are delivered again (DTFx abandons the work
            # item). No activity was sent, because activity messages are only sent by a successful commit.
            self.failing_commits -= 1
            instance.failed_commits += 1
            del instance.history[started_index:]
            for event in events:
                self._queue(instance, self.clock, event)
            return
        instance.episodes += 1
        instance.custom_status = state.get("customStatus")
        instance.custom_statuses.append(instance.custom_status)

        shadow = _ShadowReplay(instance.history, state)
        shadow.run()
        new_events: list[dict[str, Any]] = []
        scheduled: list[dict[str, Any]] = []
        if shadow.nondeterminism:
            self._complete(instance, 3, f"Orchestrator function '{instance.name}' failed: {shadow.nondeterminism}",
                           shadow.id_counter, new_events)
        else:
            for action in sorted(shadow.actions_map.values(), key=lambda a: a.id):
                if action.kind == "task":
                    event = {"EventType": TASK_SCHEDULED, "Name": action.name, "Version": "", "Input": None,
                             "ParentTraceContext": None, "Tags": None, "EventId": action.id, "IsPlayed": False,
                             "Timestamp": _ts(now)}
                    new_events.append(event)
                    scheduled.append({"id": action.id, "name": action.name,
                                      "input": json.loads(action.input) if action.input else None})
                    self._run_activity(instance, action)
                else:
                    new_events.append({"EventType": TIMER_CREATED, "FireAt": _ts(action.fire_at),
                                       "EventId": action.id, "IsPlayed": False, "Timestamp": _ts(now)})
                    scheduled.append({"id": action.id, "timer": _ts(action.fire_at)})
                    self._queue(instance, max(action.fire_at, now),
                                {"EventType": TIMER_FIRED, "TimerId": action.id, "FireAt": _ts(action.fire_at),
                                 "EventId": -1, "IsPlayed": False})
            if state.get("error"):
                if shadow.shim_finished and not shadow.open_tasks:
                    self._complete(instance, 3, f"Orchestrator function '{instance.name}' failed: {state['error']}",
                                   shadow.id_counter, new_events)
            elif state.get("isDone") and shadow.shim_finished and not shadow.open_tasks:
                output = state.get("output")
                self._complete(instance, 1, json.dumps(output, separators=(",", ":"), ensure_ascii=False)
                               if output is not None else None, shadow.id_counter, new_events)
        instance.episode_actions.append(scheduled)
        instance.history.extend(new_events)
        instance.history.append({"EventType": ORCHESTRATOR_COMPLETED, "EventId": -1, "IsPlayed": False,
                                 "Timestamp": _ts(now)})

    def _complete(self, instance: Instance, status: int, result: str | None, event_id: int,
                  new_events: list[dict[str, Any]]) -> None:
        new_events.append({"EventType": EXECUTION_COMPLETED, "OrchestrationStatus": status, "Result": result,
                           "FailureDetails": None, "EventId": event_id, "IsPlayed": False,
                           "Timestamp": _ts(self.clock)})
        instance.status = "Completed" if status == 1 else "Failed"
        if status == 1:
            instance.output = json.loads(result) if result is not None else None
        else:
            instance.output = result

    def _run_activity(self, instance: Instance, action: _NewAction) -> None:
        entry = self.activities.get(action.name.lower())
        if entry is None:
            raise RuntimeError(f"The function '{action.name}' doesn't exist, is disabled, or is not an activity")
        function, param = entry
        arg = ActivityTriggerConverter.decode(Datum(type="string", value=action.input), trigger_metadata=None)
        self.activity_calls.append((action.name, arg))
        try:
            result = function.get_user_function()(**{param: arg})
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
            encoded = ActivityTriggerConverter.encode(result, expected_type=None)
            event = {"EventType": TASK_COMPLETED, "TaskScheduledId": action.id,
                     "Result": _compact(encoded.value), "EventId": -1, "IsPlayed": False}
        except Exception as exc:  # noqa: BLE001 - becomes TaskFailed like the extension (protocol §4.3)
            friendly = f" {type(exc).__name__}: {exc}"
            details = json.dumps({"$type": "System.Exception, System.Private.CoreLib", "ClassName": "System.Exception",
                                  "Message": friendly, "InnerException": None}, separators=(",", ":"))
            event = {"EventType": TASK_FAILED, "TaskScheduledId": action.id,
                     "Reason": f"Activity function '{action.name}' failed: {friendly}", "Details": details,
                     "FailureDetails": None, "EventId": -1, "IsPlayed": False}
        self._queue(instance, self.clock, event)

    # --- inspection helpers
    def comparable_history(self, instance_id: str) -> list[tuple]:
        """History without timestamps/execution ids, for comparing two runs of the same scenario."""
        out = []
        for event in self.instances[instance_id].history:
            out.append(tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in event.items()
                                    if k not in ("Timestamp", "IsPlayed", "OrchestrationInstance"))))
        return out


async def _await(awaitable: Any) -> Any:
    return await awaitable
