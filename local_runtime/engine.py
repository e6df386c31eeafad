"""The orchestration and activity dispatchers (the DTFx part of the emulated extension), on top of :mod:`.store`.

* An **episode** (protocol §0, §3.12) takes *all* due messages of one instance, appends ``OrchestratorStarted`` and
  the message events to the history, calls the orchestrator once in a worker thread, replays the returned state
  (:func:`local_runtime.replay.replay`) and commits, in one SQLite transaction, the new events, the consumed messages
  and the new work (activity work items, timer messages, sub-orchestration starts, parent notices).
* One instance never has two episodes at a time (``_running``); different instances run concurrently.
* Activities run once per work item; the result message and the deletion of the work item are one transaction, so
  after a crash exactly the activities without a recorded result run again (at-least-once).
* Timers are messages whose ``visible_us`` is their ``FireAt``; the scheduler sleeps until the next one is due.
* Payload limits (:mod:`.limits`; docs/internals.md "Payload limits (local runtime)"): an oversized orchestration
  input or event payload is refused by :meth:`Engine.start_instance` / :meth:`Engine.check_event_payload` before
  anything is written; an oversized activity output fails that activity task (``TaskFailed``); an oversized
  payload in what an episode decided (activity or sub-orchestration input, event sent, output, continue-as-new
  input, custom status) fails the orchestration instead of committing the actions.

All SQLite access happens on the event loop thread; user code runs in thread pools (or on the loop when async).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from . import events as ev
from .app_loader import Registry
from .events import ET
from .limits import PayloadLimits, PayloadTooLarge
from .replay import Decision, NewAction, Outcome, replay, unknown_function_message
from .store import TERMINAL, Instance, InstanceExistsError, Store, WorkItem
from .worker import call_orchestrator, run_activity

__all__ = ["Engine", "to_us", "from_us"]

log = logging.getLogger("local_runtime")

_MESSAGE_EVENTS = {ET.ExecutionStarted, ET.TaskCompleted, ET.TaskFailed, ET.TimerFired, ET.EventRaised,
                   ET.SubOrchestrationInstanceCompleted, ET.SubOrchestrationInstanceFailed,
                   ET.ExecutionTerminated, ET.ExecutionSuspended, ET.ExecutionResumed}
_STATUS_CODE = {"completed": 1, "failed": 3, "terminated": 5}
_STATUS_NAME = {"completed": "Completed", "failed": "Failed", "terminated": "Terminated"}

_T = TypeVar("_T")
_ALREADY_EXISTS_TYPE = "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException"


def to_us(t) -> int:
    """Aware datetime → integer microseconds since the epoch."""
    return int(round(t.timestamp() * 1_000_000))


def from_us(us: int):
    """Integer microseconds since the epoch → aware UTC datetime."""
    import datetime as dt
    return dt.datetime.fromtimestamp(us / 1_000_000, tz=dt.UTC)


def _describe(e: dict) -> str:
    name = ET.NAMES.get(e["EventType"], str(e["EventType"]))
    if "TaskScheduledId" in e:
        return f"{name}({e['TaskScheduledId']})"
    if "TimerId" in e:
        return f"{name}({e['TimerId']})"
    if e["EventType"] == ET.EventRaised:
        return f"{name}({e.get('Name')})"
    return name


def _field(action: NewAction, what: str, value: _T | None) -> _T:
    """A field that replay always sets for this kind of action (see :class:`NewAction`); RuntimeError if not."""
    if value is None:
        raise RuntimeError(f"replay returned a {action.kind} action (id {action.id}) without {what}")
    return value


class Engine:
    """Runs episodes and activities for the app in ``registry`` with state in ``store``.

    ``orchestrator_threads``/``activity_threads`` size the two thread pools (orchestrators and sync activities).
    ``limits``: the payload limits to enforce (default :meth:`PayloadLimits.from_env`, read now).
    """

    def __init__(self, store: Store, registry: Registry, app_dir: Path, *, orchestrator_threads: int = 4,
                 activity_threads: int = 16, limits: PayloadLimits | None = None):
        self.store = store
        self.limits = limits if limits is not None else PayloadLimits.from_env()
        self.registry = registry
        self.app_dir = str(app_dir)
        self.orch_pool = ThreadPoolExecutor(orchestrator_threads, thread_name_prefix="orchestrator")
        self.act_pool = ThreadPoolExecutor(activity_threads, thread_name_prefix="activity")
        self._running: set[str] = set()
        self._active_work: set[int] = set()
        self._tasks: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task | None = None
        self._stopping = False

    # ---- lifecycle ----
    async def start(self) -> None:
        """Re-dispatch every activity work item left from a previous run, then start the scheduler."""
        leftover = self.store.work_items()
        if leftover:
            log.info("Resuming %d in-flight activit%s from the state file", len(leftover),
                     "y" if len(leftover) == 1 else "ies")
        for w in leftover:
            self._dispatch(w)
        self._scheduler = asyncio.create_task(self._schedule_loop())

    async def stop(self) -> None:
        """Stop dispatching; wait briefly for running work; shut the pools down."""
        self._stopping = True
        if self._scheduler:
            self._scheduler.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        self.orch_pool.shutdown(wait=False, cancel_futures=True)
        self.act_pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        """Ask the scheduler to look for due messages now."""
        self._wake.set()

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _schedule_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            now = to_us(ev.utcnow())
            for iid in self.store.due_instances(now):
                if iid not in self._running:
                    self._running.add(iid)
                    self._spawn(self._episode(iid))
            nxt = self.store.next_visible_us(now)
            timeout = 5.0 if nxt is None else min(5.0, max(0.0, (nxt - to_us(ev.utcnow())) / 1e6) + 0.001)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    # ---- client operations (used by the Durable HTTP API) ----
    def start_instance(self, name: str, instance_id: str, input_text: str | None) -> None:
        """Create ``instance_id`` as Pending (replacing a finished instance of that id) and enqueue its
        ``ExecutionStarted``.

        ``input_text`` is the ``ExecutionStarted.Input`` JSON text (protocol §1). Raises
        :class:`~local_runtime.limits.PayloadTooLarge` when the input is over the payload limit and
        :class:`~local_runtime.store.InstanceExistsError` when the id is Pending, Running, Suspended or
        ContinuedAsNew (the extension's default ``NonRunningStates``); nothing is written then."""
        refusal = self.limits.payload_error("orchestration input", input_text)
        if refusal is not None:
            raise PayloadTooLarge(refusal)
        now = ev.utcnow()
        execution_id = uuid.uuid4().hex
        inst = Instance(instance_id, name, execution_id, "Pending", input_text, None, None, to_us(now),
                        to_us(now), None, None, None)
        started = ev.execution_started(instance_id, execution_id, name, input_text, now)
        self.store.create_instance(inst, started, to_us(now))
        log.info("Started orchestration '%s' instance %s", name, instance_id)
        self.wake()

    def check_event_payload(self, input_text: str | None) -> None:
        """Raise :class:`~local_runtime.limits.PayloadTooLarge` when an external event's payload (its JSON text)
        is over the payload limit."""
        refusal = self.limits.payload_error("external event payload", input_text)
        if refusal is not None:
            raise PayloadTooLarge(refusal)

    def send_event(self, instance_id: str, event: dict) -> None:
        """Enqueue an instance-level message (external event, terminate, suspend, resume) and wake up."""
        self.store.send(instance_id, event, to_us(ev.utcnow()))
        self.wake()

    # ---- episodes ----
    async def _episode(self, iid: str) -> None:
        try:
            await self._run_episode(iid)
        except Exception:  # noqa: BLE001
            log.exception("Episode of instance %s failed inside the runtime; messages kept for a retry", iid)
            await asyncio.sleep(1.0)
        finally:
            self._running.discard(iid)
            self.wake()

    async def _run_episode(self, iid: str) -> None:
        store = self.store
        started_clock = time.perf_counter()
        now = ev.utcnow()
        msgs = store.due_messages(iid, to_us(now))
        if not msgs:
            return
        inst = store.instance(iid)
        if inst is None or inst.status in TERMINAL:
            store.drop_messages([m.id for m in msgs])
            log.debug("Dropped %d message(s) for %s instance %s", len(msgs),
                      inst.status if inst else "unknown", iid)
            return
        keep = [m for m in msgs if m.execution_id is None or m.execution_id == inst.execution_id]
        consumed = [m.id for m in msgs]
        if not keep:
            store.drop_messages(consumed)
            return
        history = store.history(iid)
        ts = now
        for e in history:
            if e["EventType"] == ET.OrchestratorStarted:
                ts = max(ts, ev.parse_time(e["Timestamp"]))
        for m in keep:
            if m.event["EventType"] == ET.TimerFired:
                ts = max(ts, ev.parse_time(m.event["FireAt"]))
        new_events = [m.event for m in keep]
        for e in new_events:
            e["IsPlayed"] = False
        os_event = ev.orchestrator_started(ts)
        sdk_history = history + [os_event] + new_events
        started = next((e for e in sdk_history if e["EventType"] == ET.ExecutionStarted), None)
        if started is None:
            # Results for an execution that has not started (should not happen): keep them for later.
            log.warning("Instance %s has messages but no ExecutionStarted; dropping %s", iid,
                        [_describe(e) for e in new_events])
            store.drop_messages(consumed)
            return
        parent = started.get("ParentInstance") or {}
        parent_iid = (parent.get("OrchestrationInstance") or {}).get("InstanceId")

        terminate = next((e for e in new_events if e["EventType"] == ET.ExecutionTerminated), None)
        state = None
        if terminate is not None:
            next_id = max((e.get("EventId", -1) for e in history), default=-1) + 1
            decision = Decision(outcome=Outcome("terminated", terminate.get("Input"), next_id))
        else:
            info = self.registry.orchestrator(inst.name)
            if info is None:
                msg = unknown_function_message(inst.name, "an orchestrator",
                                               [f.durable for f in self.registry.orchestrators.values()])
                decision = Decision(outcome=Outcome("failed", f"Orchestrator function '{inst.name}' failed: {msg}",
                                                    0, details=f"Message: {msg}, StackTrace: "))
            else:
                body = ev.context_json(sdk_history, iid, started.get("Input"), parent_iid)
                loop = asyncio.get_running_loop()
                state = await loop.run_in_executor(self.orch_pool, call_orchestrator, info, body)
                decision = replay(sdk_history, state, orchestrator_name=info.durable, instance_id=iid,
                                  execution_id=inst.execution_id,
                                  activities=[f.durable for f in self.registry.activities.values()],
                                  orchestrators=[f.durable for f in self.registry.orchestrators.values()],
                                  entities=[f.durable for f in self.registry.entities.values()])
                refusal = self._oversized(decision)
                if refusal is not None:
                    log.warning("Orchestration '%s' instance %s fails: %s", inst.name, iid, refusal)
                    decision.new_actions = []
                    decision.outcome = Outcome("failed", f"Orchestrator function '{inst.name}' failed: {refusal}",
                                               decision.next_id)
        await self._commit(inst, ts, os_event, new_events, consumed, decision, state, started_clock)

    def _oversized(self, decision: Decision) -> str | None:
        """Why the scheduler would refuse what this episode decided (the first oversized payload: custom status,
        then the new actions in id order, then the output or continue-as-new input), or None."""
        limits = self.limits
        refusal = limits.custom_status_error(decision.custom_status)
        if refusal is not None:
            return refusal
        kinds = {"activity": "activity input", "suborchestration": "sub-orchestration input",
                 "event_sent": "external event payload"}
        for a in decision.new_actions:
            if a.kind in kinds and a.input is not None:
                # As the scheduler gets them: TaskScheduled.Input is the object[] holding the action's input
                # string (protocol §1); a child's or a sent event's input is that string serialized again.
                text = ev.compact([a.input]) if a.kind == "activity" else _child_input(a.input)
                refusal = limits.payload_error(f"{kinds[a.kind]} of {a.name or a.kind} (task {a.id})", text)
                if refusal is not None:
                    return refusal
        out = decision.outcome
        if out is not None and out.kind in ("completed", "continued_as_new"):
            kind = "orchestration output" if out.kind == "completed" else "continue-as-new input"
            return limits.payload_error(kind, out.result)
        return None

    async def _commit(self, inst: Instance, ts, os_event: dict, new_events: list[dict], consumed: list[int],
                      decision: Decision, state: dict | None, started_clock: float) -> None:
        iid, exec_id = inst.instance_id, inst.execution_id
        ts_us = to_us(ts)
        stored_msgs = [{**e, "IsPlayed": e["EventType"] in _MESSAGE_EVENTS} for e in new_events]
        append = [os_event, *stored_msgs]
        work: list[tuple] = []
        messages: list[tuple] = []
        children: list[tuple[Instance, dict, Callable[[str], tuple]]] = []
        new_desc = []
        for a in decision.new_actions:
            if a.kind == "activity":
                fn_name = _field(a, "a name", a.name)
                append.append(ev.task_scheduled(a.id, fn_name, ts))
                work.append((exec_id, a.id, fn_name, a.input))
                new_desc.append(f"TaskScheduled({a.id} {fn_name})")
            elif a.kind == "timer":
                fire_at = _field(a, "fire_at", a.fire_at)
                append.append(ev.timer_created(a.id, fire_at, ts))
                messages.append((iid, exec_id, max(to_us(fire_at), ts_us), ev.timer_fired(a.id, fire_at, ts)))
                new_desc.append(f"TimerCreated({a.id} {ev.fmt_time(fire_at)})")
            elif a.kind == "suborchestration":
                fn_name = _field(a, "a name", a.name)
                child_iid = _field(a, "an instance id", a.instance_id)
                append.append(ev.suborch_created(a.id, fn_name, child_iid, ts))
                child_exec = uuid.uuid4().hex
                child_input = None if a.input is None else _child_input(a.input)
                parent = {"Name": inst.name, "OrchestrationInstance": {"InstanceId": iid, "ExecutionId": exec_id},
                          "TaskScheduleId": a.id, "Version": ""}
                info = self.registry.orchestrator(fn_name)
                child_name = info.durable if info else fn_name
                child = Instance(child_iid, child_name, child_exec, "Pending", child_input, None, None, ts_us,
                                 ts_us, iid, exec_id, a.id)
                children.append((child, ev.execution_started(child_iid, child_exec, child_name, child_input,
                                                             ts, parent), _refusal(iid, exec_id, a.id, child_iid, ts)))
                new_desc.append(f"SubOrchestrationInstanceCreated({a.id} {fn_name} {child_iid})")
        updates: dict = {"updated_us": ts_us}
        reset = False
        finished = False
        out = decision.outcome
        if out is None:
            updates["status"] = "Suspended" if decision.suspended else "Running"
            updates["custom_status"] = decision.custom_status
            append.append(ev.orchestrator_completed(ts))
        elif out.kind == "continued_as_new":
            reset = True
            append = []
            new_exec = uuid.uuid4().hex
            updates.update(status="Running", execution_id=new_exec, input=out.result, output=None,
                           custom_status=decision.custom_status)
            messages.append((iid, new_exec, ts_us,
                             ev.execution_started(iid, new_exec, inst.name, out.result, ts,
                                                  _parent_of(inst))))
        else:
            finished = True
            append.append(ev.execution_completed(out.event_id, _STATUS_CODE[out.kind], out.result, ts))
            append.append(ev.orchestrator_completed(ts))
            updates.update(status=_STATUS_NAME[out.kind], output=out.result)
            if out.kind != "terminated":
                updates["custom_status"] = decision.custom_status
            if inst.parent_instance_id:
                if inst.parent_task_id is None:  # the engine always stores both when it creates a child
                    raise RuntimeError(f"instance {iid} has a parent instance but no parent task id")
                if out.kind == "completed":
                    notice = ev.suborch_completed(inst.parent_task_id, out.result, ts)
                else:
                    notice = ev.suborch_failed(inst.parent_task_id, out.result, out.details, ts)
                messages.append((inst.parent_instance_id, inst.parent_execution_id, ts_us, notice))
        work_ids = self.store.commit_episode(instance_id=iid, consumed=consumed, append=append,
                                             reset_history=reset, updates=updates, work=work, messages=messages,
                                             children=children, finished=finished)
        elapsed = (time.perf_counter() - started_clock) * 1000
        log.debug("Episode %s [%s]: in=%s new=%s outcome=%s status=%s (%.1f ms)", iid, exec_id[:8],
                  [_describe(e) for e in new_events], new_desc,
                  (out.kind if out else None), updates.get("status"), elapsed)
        if out is not None:
            if out.kind == "failed":
                log.info("Orchestration '%s' instance %s %s: %s", inst.name, iid, out.kind, out.result)
            else:
                log.info("Orchestration '%s' instance %s %s", inst.name, iid,
                         "continued as new" if out.kind == "continued_as_new" else out.kind)
        for w_id, (execution_id, task_id, name, input_text) in zip(work_ids, work, strict=True):
            self._dispatch(WorkItem(w_id, iid, execution_id, task_id, name, input_text))
        if messages or children:
            self.wake()

    # ---- activities ----
    def _dispatch(self, w: WorkItem) -> None:
        if w.id in self._active_work or self._stopping:
            return
        self._active_work.add(w.id)
        self._spawn(self._activity(w))

    async def _activity(self, w: WorkItem) -> None:
        try:
            info = self.registry.activity(w.name)
            a: str | None  # the result text (ok) or the TaskFailed reason (not ok)
            b: str | None  # the TaskFailed details
            started = time.perf_counter()
            log.info("Executing activity '%s' (instance %s, task %d)", w.name, w.instance_id, w.task_id)
            if info is None:
                msg = unknown_function_message(w.name, "an activity",
                                               [f.durable for f in self.registry.activities.values()])
                ok, a, b = False, f"Activity function '{w.name}' failed:  ArgumentException: {msg}", None
            else:
                ok, a, b = await run_activity(info, w.input, self.act_pool, self.app_dir)
                refusal = self.limits.payload_error("activity output", a) if ok else None
                if refusal is not None:
                    log.warning("Activity '%s' (instance %s, task %d) fails: %s", w.name, w.instance_id,
                                w.task_id, refusal)
                    ok, a, b = False, f"Activity function '{w.name}' failed: {refusal}", None
            if self._stopping:
                return
            ts = ev.utcnow()
            if ok:
                event = ev.task_completed(w.task_id, a, ts)
            elif a is None:  # run_activity always returns the reason text with a failure
                raise RuntimeError(f"activity '{w.name}' failed without a reason text")
            else:
                event = ev.task_failed(w.task_id, a, b, ts)
            recorded = self.store.complete_work(w.id, w.instance_id, w.execution_id, event, to_us(ts))
            log.info("Executed activity '%s' (%s, instance %s, task %d, %.0f ms)%s", w.name,
                     "Succeeded" if ok else "Failed", w.instance_id, w.task_id,
                     (time.perf_counter() - started) * 1000, "" if recorded else " (result dropped)")
            if not ok:
                log.debug("Activity failure reason: %s", a)
            self.wake()
        finally:
            self._active_work.discard(w.id)


def _child_input(value) -> str:
    """``ExecutionStarted.Input`` of a sub-orchestration for the action's input (compact JSON text)."""
    return ev.compact(value)


def _refusal(iid: str, exec_id: str, task_id: int, child_iid: str, ts) -> Callable[[str], tuple]:
    """The parent's ``SubOrchestrationInstanceFailed`` message for a child id found active (``status``): the
    sub-orchestration task fails with the text of the start refusal (details: the DTFx exception type name)
    instead of replacing the running child."""
    def message(status: str) -> tuple:
        reason = str(InstanceExistsError(child_iid, status))
        return (iid, exec_id, to_us(ts), ev.suborch_failed(task_id, reason, _ALREADY_EXISTS_TYPE, ts))
    return message


def _parent_of(inst: Instance) -> dict | None:
    if not inst.parent_instance_id:
        return None
    return {"Name": None, "OrchestrationInstance": {"InstanceId": inst.parent_instance_id,
                                                    "ExecutionId": inst.parent_execution_id},
            "TaskScheduleId": inst.parent_task_id, "Version": ""}


def dumps(value) -> str:
    """JSON text for logs."""
    return json.dumps(value, default=str)
