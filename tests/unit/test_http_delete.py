"""``DELETE /api/runs/{runId}`` and ``DELETE /api/conversations/{conversationId}`` (durable_agents._http.deletion)
through the real decorated functions and a real Durable client talking to ``FakeDurableHost`` (the harness of
``test_http_api.py``), with a real file blob store under ``tmp_path`` (``PAYLOAD_PATH``) and the SQLite approval
audit (``AUDIT_PATH``).

What is checked: support staff delete a finished run with its sub-orchestrations (blobs first, the children's
histories next, the run's own last), the answer counts the blobs, a second DELETE is 404; who may delete (401 / 403
/ 404); active runs, conversations and sub-orchestrations are 409 and nothing is touched; a failed blob delete or a
partial purge leaves enough behind for a retry to finish; the approval audit is kept.
"""

import asyncio
import json
from typing import Any

import pytest

from durable_agents._audit import AuditRecord, get_audit_store
from durable_agents._blobs import FileBlobStore, get_blob_store, put_payload, run_prefix
from durable_agents._contracts import CONVERSATION_ORCHESTRATOR
from durable_agents._conversations import ConversationLog
from durable_agents._http import deletion
from tests.unit.test_http_api import (
    CAROL,
    CAROL_PRINCIPAL,
    ORCH,
    STAFF,
    Api,
    _build_api,
    assert_problem,
    run_input,
    seed_awaiting,
)
from tests.unit.test_http_api_fake_durable import start_fake_host, stop_fake_host
from tests.unit.test_identity import principal_headers

APPROVER_ONLY = principal_headers(oid="5e1f0c3a-7d2b-4c41-9f0e-3b7a2d9c0003", name="Ada Approver",
                                  preferred_username="ada@contoso.com", roles=("Approver",))
"""An approver without the Support role: sees every run, may not delete."""
STRANGER = principal_headers(oid="5e1f0c3a-7d2b-4c41-9f0e-3b7a2d9c0004", name="Sid Stranger",
                             preferred_username="sid@example.com")
"""A customer without roles who neither started nor is the customer of the seeded runs."""


@pytest.fixture(autouse=True)
def auth_env(monkeypatch, tmp_path):
    """App Service authentication on, default roles, the audit and the payload store under ``tmp_path``."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    monkeypatch.setenv("AUDIT_PATH", str(tmp_path / "approval-audit.sqlite3"))
    monkeypatch.setenv("PAYLOAD_PATH", str(tmp_path / "payloads"))
    for name in ("APPROVER_ROLES", "APPROVER_GROUPS", "SUPPORT_ROLES", "SUPPORT_GROUPS", "SEPARATION_OF_DUTIES",
                 "AUDIT_TABLE_ENDPOINT", "AUDIT_TABLE_CONNECTION_STRING", "PAYLOAD_BLOB_ENDPOINT",
                 "PAYLOAD_BLOB_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def durable():
    loop, host = start_fake_host((ORCH, CONVERSATION_ORCHESTRATOR))
    yield loop, host
    stop_fake_host(loop, host)


@pytest.fixture
def api(durable) -> Api:
    return _build_api(durable)


@pytest.fixture
def store(tmp_path) -> FileBlobStore:
    found = get_blob_store()
    assert isinstance(found, FileBlobStore) and found.root == (tmp_path / "payloads").resolve()
    return found


def delete_run(api: Api, run_id: str, **kw: Any):
    return api.call("api_delete_run", "DELETE", f"/api/runs/{run_id}", route_params={"runId": run_id}, **kw)


def delete_conversation(api: Api, cid: str, **kw: Any):
    return api.call("api_delete_conversation", "DELETE", f"/api/conversations/{cid}",
                    route_params={"conversationId": cid}, **kw)


def get_conversation(api: Api, cid: str, **kw: Any):
    return api.call("api_get_conversation", "GET", f"/api/conversations/{cid}", route_params={"conversationId": cid},
                    **kw)


def completed(host, run_id: str, *, children: list[str] | None = None, name: str = ORCH) -> None:
    custom: dict[str, Any] = {"agent": "support", "turns": 1, "pendingApprovals": [], "approvals": []}
    if children is not None:
        custom["children"] = children
    host.add(run_id, name, run_input(), runtime_status="Completed", custom_status=custom,
             output={"finalOutput": "done", "lastAgent": "support", "turns": 1})


def blobs(store: FileBlobStore, instance_id: str, count: int) -> None:
    """``count`` payloads of ``instance_id`` (content-addressed, as the runner stores them)."""
    for i in range(count):
        put_payload(store, instance_id, f"payload {i} of {instance_id}".encode())


def conversation_text(customer: str = "carol@example.com") -> str:
    return json.dumps({"kind": "conversation", "agent": "support", "settings": {}, "version": 3,
                       "customer": customer, "startedBy": CAROL_PRINCIPAL})


# ------------------------------------------------------------------------------------------------------
# Runs


def test_support_staff_delete_a_finished_run_with_its_sub_orchestrations_blobs_first_the_run_last(api, store):
    host = api.host
    completed(host, "run1", children=["run1:sub-1", "run1:ORD-1"])
    completed(host, "run1:sub-1", children=["run1:sub-1:sub-1"])
    host.add("run1:ORD-1", ORCH, run_input(), runtime_status="Failed", output="boom")
    host.add("run1:sub-1:sub-1", ORCH, run_input(), runtime_status="Terminated", output="cancelled")
    completed(host, "run10")  # an id that run1 is a prefix of: untouched
    blobs(store, "run1", 3)
    blobs(store, "run1:sub-1", 2)
    blobs(store, "run1:sub-1:sub-1", 1)
    blobs(store, "run10", 2)
    host.requests.clear()

    reply = delete_run(api, "run1")

    assert reply.status == 200, reply.raw
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.body == {"id": "run1", "deleted": True, "blobsDeleted": 6}
    assert set(host.instances) == {"run10"}
    for gone in ("run1", "run1:sub-1", "run1:ORD-1", "run1:sub-1:sub-1"):
        assert store.list(run_prefix(gone)) == []
    assert len(store.list(run_prefix("run10"))) == 2
    purged = [path.split("?")[0].rsplit("/", 1)[1] for method, path in host.mutations() if method == "DELETE"]
    assert purged == ["run1:sub-1:sub-1", "run1:ORD-1", "run1:sub-1", "run1"]  # deepest first, the run last
    assert_problem(api.get_run("run1"), 404, "run-not-found", "/api/runs/run1")
    again = assert_problem(delete_run(api, "run1"), 404, "run-not-found", "/api/runs/run1")
    assert "run1" in again["detail"]


def test_a_run_without_blobs_or_children_is_deleted_with_a_count_of_zero(api):
    api.host.add("plain", ORCH, run_input(), runtime_status="Failed", output="Orchestrator function 'x' failed: y")
    reply = delete_run(api, "plain")
    assert reply.status == 200 and reply.body == {"id": "plain", "deleted": True, "blobsDeleted": 0}
    assert "plain" not in api.host.instances


def test_only_support_staff_may_delete_and_callers_who_may_not_see_the_run_get_404(api, store):
    completed(api.host, "run2")
    blobs(store, "run2", 2)
    assert_problem(delete_run(api, "run2", user=None), 401, "unauthenticated", "/api/runs/run2")
    doc = assert_problem(delete_run(api, "run2", user=CAROL), 403, "not-allowed", "/api/runs/run2")
    assert "Support" in doc["detail"]  # the starter and customer sees it, but may not delete it
    assert_problem(delete_run(api, "run2", user=APPROVER_ONLY), 403, "not-allowed", "/api/runs/run2")
    assert_problem(delete_run(api, "run2", user=STRANGER), 404, "run-not-found", "/api/runs/run2")
    assert "run2" in api.host.instances and len(store.list(run_prefix("run2"))) == 2
    assert [m for m in api.host.mutations() if m[0] == "DELETE"] == []


def test_support_groups_grant_the_delete_too(api, monkeypatch):
    monkeypatch.setenv("SUPPORT_GROUPS", "grp-support")
    completed(api.host, "run3")
    member = principal_headers(oid="5e1f0c3a-7d2b-4c41-9f0e-3b7a2d9c0005", preferred_username="gus@contoso.com",
                               groups=("grp-support",))
    assert delete_run(api, "run3", user=member).status == 200


def test_a_pending_running_or_awaiting_run_is_409_and_nothing_is_deleted(api, store):
    host = api.host
    host.add("pend", ORCH, run_input(), runtime_status="Pending")
    host.add("busy", ORCH, run_input(), runtime_status="Running", custom_status={"turns": 1})
    seed_awaiting(host, "waits")
    for run_id in ("pend", "busy", "waits"):
        blobs(store, run_id, 1)
        doc = assert_problem(delete_run(api, run_id), 409, "run-active", f"/api/runs/{run_id}")
        assert "cancel it first" in doc["detail"]
        assert run_id in host.instances and len(store.list(run_prefix(run_id))) == 1
    assert [m for m in host.mutations() if m[0] == "DELETE"] == []


def test_a_finished_run_with_a_sub_orchestration_still_running_is_409(api, store):
    host = api.host
    host.add("parent", ORCH, run_input(), runtime_status="Terminated", output="cancelled by caller",
             custom_status={"children": ["parent:sub-1", "parent:sub-2"]})
    completed(host, "parent:sub-1")
    host.add("parent:sub-2", ORCH, run_input(), runtime_status="Running")
    blobs(store, "parent", 1)
    doc = assert_problem(delete_run(api, "parent"), 409, "run-active", "/api/runs/parent")
    assert doc["activeSubOrchestrations"] == ["parent:sub-2"]
    assert set(host.instances) == {"parent", "parent:sub-1", "parent:sub-2"}
    assert len(store.list(run_prefix("parent"))) == 1


def test_unknown_ids_ids_that_cannot_be_runs_and_conversations_are_404_on_the_runs_route(api):
    api.host.add("conv1", CONVERSATION_ORCHESTRATOR, conversation_text(), runtime_status="Completed")
    for run_id, path in (("nope", "/api/runs/nope"), ("conv1", "/api/runs/conv1"),
                         ("bad id", "/api/runs/bad id")):
        assert_problem(delete_run(api, run_id), 404, "run-not-found", path)
    assert "conv1" in api.host.instances


def test_a_body_must_be_absent_or_an_empty_json_object(api):
    completed(api.host, "run4")
    doc = assert_problem(delete_run(api, "run4", body={"force": True}, headers={"Content-Type": "application/json"}),
                         400, "invalid-body", "/api/runs/run4")
    assert "force" in json.dumps(doc)
    assert_problem(delete_run(api, "run4", body="{}", headers={"Content-Type": "text/plain"}), 415,
                   "unsupported-media-type", "/api/runs/run4")
    assert "run4" in api.host.instances
    reply = delete_run(api, "run4", body="{}", headers={"Content-Type": "application/json"})
    assert reply.status == 200, reply.raw


class FlakyStore(FileBlobStore):
    """The real file store, whose first ``failures`` deletes fail as a disk (or Azure) error would."""

    def __init__(self, root: Any, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def delete(self, name: str) -> bool:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("simulated I/O error")
        return super().delete(name)


def test_a_failed_blob_delete_purges_nothing_and_a_retry_deletes_everything(api, store, monkeypatch, caplog):
    completed(api.host, "run5", children=["run5:sub-1"])
    completed(api.host, "run5:sub-1")
    blobs(store, "run5", 2)
    blobs(store, "run5:sub-1", 2)
    flaky = FlakyStore(store.root, failures=1)
    monkeypatch.setattr(deletion, "get_blob_store", lambda app_dir=None: flaky)

    assert_problem(delete_run(api, "run5"), 500, "internal-error", "/api/runs/run5")
    assert {"run5", "run5:sub-1"} <= set(api.host.instances)  # no history was purged
    assert [m for m in api.host.mutations() if m[0] == "DELETE"] == []

    reply = delete_run(api, "run5")
    assert reply.status == 200 and reply.body == {"id": "run5", "deleted": True, "blobsDeleted": 4}
    assert store.list("runs/") == [] and not {"run5", "run5:sub-1"} & set(api.host.instances)


def test_a_retry_after_a_partial_purge_still_deletes_the_blobs_of_an_already_purged_child(api, store):
    completed(api.host, "run6", children=["run6:sub-1", "run6:sub-2"])
    completed(api.host, "run6:sub-2")
    blobs(store, "run6", 1)
    blobs(store, "run6:sub-1", 2)  # its history went in an earlier DELETE that failed before purging run6
    blobs(store, "run6:sub-2", 1)
    reply = delete_run(api, "run6")
    assert reply.status == 200 and reply.body["blobsDeleted"] == 4
    assert store.list("runs/") == []
    purged = [path.split("?")[0].rsplit("/", 1)[1] for method, path in api.host.mutations() if method == "DELETE"]
    assert purged == ["run6:sub-2", "run6"]  # a child that no longer exists is not purged again


def test_of_two_concurrent_deletes_one_answers_200_and_the_other_404(api, store):
    completed(api.host, "run7")
    blobs(store, "run7", 3)

    async def both() -> list[Any]:
        user_function = api.functions["api_delete_run"].get_user_function()
        import azure.functions as func

        def request() -> func.HttpRequest:
            return func.HttpRequest("DELETE", "http://localhost:7071/api/runs/run7?code=k", headers=dict(STAFF),
                                    params={"code": "k"}, route_params={"runId": "run7"}, body=b"")
        return list(await asyncio.gather(*(user_function(req=request(), client=api.host.client_json())
                                           for _ in range(2))))

    replies = api.loop.run(both())
    assert sorted(r.status_code for r in replies) == [200, 404]
    ok = next(r for r in replies if r.status_code == 200)
    assert json.loads(ok.get_body())["deleted"] is True
    assert store.list("runs/") == [] and "run7" not in api.host.instances


def test_the_approval_audit_is_kept_and_still_answered_to_support_staff(api, store):
    completed(api.host, "run8")
    blobs(store, "run8", 1)
    get_audit_store().append(AuditRecord(
        run_id="run8", approval_id="call_1", event="decided", kind="tool", tool="refund_order",
        arguments_hash="sha256:" + "0" * 64, arguments=None, decision="approved", comment="ok",
        actor_id="staff", actor_name="sam@contoso.com", at="2026-01-01T00:00:00.000Z",
        key="decided:call_1:staff:approved"))
    assert delete_run(api, "run8").status == 200
    assert [r.event for r in get_audit_store().list_for_run("run8")] == ["decided"]
    audit = api.audit("run8")
    assert audit.status == 200 and [r["approvalId"] for r in audit.body["records"]] == ["call_1"]
    assert_problem(api.audit("run8", user=CAROL), 404, "run-not-found", "/api/runs/run8/audit")


# ------------------------------------------------------------------------------------------------------
# Conversations


def test_a_closed_conversation_is_deleted_with_its_whole_message_log(api, store):
    host = api.host
    host.add("conv2", CONVERSATION_ORCHESTRATOR, conversation_text(), runtime_status="Completed",
             output={"closed": True, "reason": "closed", "messages": 1, "usage": None, "turns": 1})
    log = ConversationLog("conv2", store)
    assert log.create({"id": "conv2", "agent": "support", "customer": "carol@example.com",
                       "startedBy": CAROL_PRINCIPAL, "createdAt": "2026-01-01T00:00:00.000Z"})
    log.append_user("hello", CAROL_PRINCIPAL)
    log.close(CAROL_PRINCIPAL, "closed")
    blobs(store, "conv2", 1)  # a stored model input of one of its turns
    assert len(store.list(run_prefix("conv2"))) == 4
    assert get_conversation(api, "conv2").status == 200

    assert_problem(delete_conversation(api, "conv2", user=CAROL), 403, "not-allowed", "/api/conversations/conv2")
    reply = delete_conversation(api, "conv2")
    assert reply.status == 200 and reply.body == {"id": "conv2", "deleted": True, "blobsDeleted": 4}
    assert store.list(run_prefix("conv2")) == [] and "conv2" not in host.instances
    assert_problem(get_conversation(api, "conv2"), 404, "conversation-not-found", "/api/conversations/conv2")
    assert_problem(delete_conversation(api, "conv2"), 404, "conversation-not-found", "/api/conversations/conv2")


def test_an_open_conversation_is_409_until_its_orchestration_has_ended(api, store):
    api.host.add("conv3", CONVERSATION_ORCHESTRATOR, conversation_text(), runtime_status="Running",
                 custom_status={"conversation": {"state": "idle"}})
    log = ConversationLog("conv3", store)
    log.create({"id": "conv3", "agent": "support", "customer": "carol@example.com", "startedBy": CAROL_PRINCIPAL,
                "createdAt": "2026-01-01T00:00:00.000Z"})
    doc = assert_problem(delete_conversation(api, "conv3"), 409, "run-active", "/api/conversations/conv3")
    assert "close it first" in doc["detail"]
    assert log.info() is not None and "conv3" in api.host.instances


def test_a_run_id_and_unknown_ids_are_404_on_the_conversations_route(api):
    completed(api.host, "run9")
    for cid in ("run9", "nope", "a:b"):
        assert_problem(delete_conversation(api, cid), 404, "conversation-not-found", f"/api/conversations/{cid}")
    conv = conversation_text(customer="someone@example.com")
    api.host.add("conv4", CONVERSATION_ORCHESTRATOR, conv, runtime_status="Completed")
    assert_problem(delete_conversation(api, "conv4", user=STRANGER), 404, "conversation-not-found",
                   "/api/conversations/conv4")
    assert {"run9", "conv4"} <= set(api.host.instances)
