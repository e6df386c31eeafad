"""The UI route and GET /api/approvals over real HTTP on the local runtime (no browser): content types, cache
headers, the redirect, refused paths; the inbox's access rules, query problems and paging."""

from __future__ import annotations

import pytest

from tests.integration.conftest import AppStack, http
from tests.integration.test_agent_runs import calls, step

pytestmark = pytest.mark.integration

SCRIPT = [step("[ui-http]", 0, calls=calls(("refund_order", {"order_id": "ORD-1001", "amount": 291.50,
                                                             "reason": "late"}))),
          step("[ui-http]", 1, text="Done."),
          step("[ui-http-2]", 0, calls=calls(("refund_order", {"order_id": "ORD-1003", "amount": 738.60,
                                                               "reason": "changed my mind"}))),
          step("[ui-http-2]", 1, text="Done.")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    app = AppStack(tmp_path_factory.mktemp("ui-http"), SCRIPT)
    yield app
    app.close()


def test_static_files_types_cache_and_refused_paths(stack):
    page = http("GET", stack.url("/api/ui/"), user=None)
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache" and page.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in page.headers["content-security-policy"] and b"app.js" in page.body
    assert b"http://" not in page.body and b"https://" not in page.body  # nothing from elsewhere
    script = http("GET", stack.url("/api/ui/app.js"), user=None)
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert http("GET", stack.url("/api/ui/app.css"), user=None).headers["content-type"].startswith("text/css")
    again = http("GET", stack.url("/api/ui/app.js"), user=None, headers={"If-None-Match": script.headers["etag"]})
    assert again.status == 304 and again.body == b""
    for path in ("/api/ui/../host.json", "/api/ui/%2e%2e/function_app.py", "/api/ui/..%2F..%2Fhost.json",
                 "/api/ui/nope.js", "/api/ui/sub/index.html", "/api/ui/.gitignore"):
        answer = http("GET", stack.url(path), user=None)
        assert answer.status == 404 and answer.headers["content-type"].startswith("application/problem+json"), path


def test_approvals_inbox_access_problems_and_paging(stack):
    run_id = stack.start_run("Refund ORD-1001. [ui-http]", customer="jordan.rivera@example.com")
    [pending] = stack.wait_status(run_id, "awaiting_approval")["pendingApprovals"]
    reviewer = http("GET", stack.url("/api/approvals")).json["approvals"]
    [item] = [a for a in reviewer if a["runId"] == run_id]
    assert item["id"] == pending["id"] and item["state"] == "pending" and item["mayDecide"] is True
    assert item["arguments"] == pending["arguments"] and item["links"]["decide"].endswith(
        f"/api/runs/{run_id}/approvals/{pending['id']}")
    # the customer sees the approval of a run that acts for them but may not decide it; a stranger sees nothing
    mine = http("GET", stack.url("/api/approvals"), user="jordan.rivera@example.com", roles="").json["approvals"]
    assert [(a["runId"], a["mayDecide"]) for a in mine] == [(run_id, False)]
    assert http("GET", stack.url("/api/approvals"), user="someone.else", roles="").json["approvals"] == []
    assert http("GET", stack.url("/api/approvals"), user=None).status == 401
    bad = http("GET", stack.url("/api/approvals?state=bogus"))
    assert bad.status == 400 and bad.json["fields"] == ["state"]
    assert http("GET", stack.url("/api/approvals?continuationToken=abc")).status == 400
    second = stack.start_run("Refund ORD-1003. [ui-http-2]", customer="amelia.chen@example.com")
    stack.wait_status(second, "awaiting_approval")
    first_page = http("GET", stack.url("/api/approvals?top=1")).json
    assert [a["runId"] for a in first_page["approvals"]] == [second] and first_page["continuationToken"]
    next_page = http("GET", stack.url(f"/api/approvals?top=1&continuationToken={first_page['continuationToken']}"))
    assert [a["runId"] for a in next_page.json["approvals"]] == [run_id]
    assert next_page.json["continuationToken"] is None
