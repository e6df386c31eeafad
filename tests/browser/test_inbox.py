"""The browser app (durable_agents/_ui) in headless Chromium against the store app on the local runtime with the
scripted model: the inbox shows a pending refund, a reviewer approves it with a comment and sees the run complete
on its run page; rejects another; an approval nobody decides in time shows as expired; the runs list filters and
pages; API problems show their ``detail``. Screenshots: tests/browser/conftest.py ``OUTPUT``."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import NON_LOOPBACK_HOST, screenshot
from tests.integration.conftest import REVIEWER, AppStack, http
from tests.integration.test_agent_runs import calls, step

pytestmark = pytest.mark.integration

SCRIPT = [
    step("[ui-approve]", 0, calls=calls(("refund_order", {"order_id": "ORD-1001", "amount": 291.50,
                                                           "reason": "arrived broken"}))),
    step("[ui-approve]", 1, text="Refunded 291.50 USD for ORD-1001."),
    step("[ui-reject]", 0, calls=calls(("refund_order", {"order_id": "ORD-1003", "amount": 738.60,
                                                          "reason": "changed my mind"}))),
    step("[ui-reject]", 1, text="The refund was not approved."),
    step("[ui-list]", 0, text="Hello from the list."),
    step("[ui-timeout]", 0, calls=calls(("refund_order", {"order_id": "ORD-1010", "amount": 664.30,
                                                           "reason": "damaged"}))),
    step("[ui-timeout]", 1, text="Nobody approved the refund in time."),
    step("[ui-live]", 0, calls=calls(("refund_order", {"order_id": "ORD-1004", "amount": 300.00,
                                                        "reason": "wrong size"}))),
    step("[ui-live]", 1, text="Refunded 300.00 USD for ORD-1004."),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    app = AppStack(tmp_path_factory.mktemp("ui-stack"), SCRIPT)
    yield app
    app.close()


def open_app(new_page, app: AppStack, hash_route: str = "#/inbox", *, user: str | None = REVIEWER,
             width: int = 1280, height: int = 900) -> Any:
    """Open the app at ``hash_route`` and set "Acting as" to ``user`` through the page's own field."""
    page = new_page(width, height)
    page.goto(app.url("/api/ui/") + hash_route)
    field = page.get_by_label("Acting as")
    field.fill(user or "")
    page.get_by_role("button", name="Use").first.click()
    return page


def card(page: Any, approval_id: str, section: str = "#pending") -> Any:
    return page.locator(f"{section} [data-approval='{approval_id}']")


def test_inbox_approve_with_a_comment_then_the_run_completes(stack, new_page):
    run_id = stack.start_run("Please refund ORD-1001, it arrived broken. [ui-approve]",
                             customer="jordan.rivera@example.com")
    [pending] = stack.wait_status(run_id, "awaiting_approval")["pendingApprovals"]
    page = open_app(new_page, stack)
    item = card(page, pending["id"])
    item.wait_for()
    text = item.inner_text()
    assert "refund_order" in text and "sam.support" in text and "support" in text
    assert "ORD-1001" in text and "291.5" in text and "arrived broken" in text
    assert "Requested" in text and "Expires" in text
    assert page.locator("html").evaluate("() => document.activeElement !== null")
    screenshot(page, "inbox")
    screenshot(open_app(new_page, stack, width=390, height=844), "inbox-phone")

    item.get_by_label("Comment (optional)").fill("Photos confirm it.")
    item.get_by_role("button", name="Approve").click()
    page.get_by_role("status").filter(has_text="Approved refund_order").wait_for()
    decided = card(page, pending["id"], "#decided")
    decided.wait_for()
    assert "riley.reviewer" in decided.inner_text() and "Photos confirm it." in decided.inner_text()
    assert card(page, pending["id"]).count() == 0

    decided.get_by_role("link", name=run_id).click()
    page.wait_for_url(re.compile(f"#/runs/{run_id}$"))
    page.locator("h2 .badge-completed").wait_for(timeout=60_000)
    body = page.locator("main").inner_text()
    assert "Refunded 291.50 USD for ORD-1001." in body
    assert "riley.reviewer" in body and "Photos confirm it." in body and "Usage" in body
    # the timeline from the run's Durable history (GET runs/{id}/timeline): model turns, the tool call, the approval
    page.locator('ol.timeline li[data-kind="output"]').wait_for(timeout=30_000)
    kinds = page.locator("ol.timeline li").evaluate_all("items => items.map(i => i.dataset.kind)")
    assert "model_turn" in kinds and "tool_call" in kinds and "approval_decided" in kinds, kinds
    assert kinds.index("approval_decided") < kinds.index("output")
    screenshot(page, "run-page")
    run = stack.run(run_id)
    assert run["status"] == "completed" and run["approvals"][0]["comment"] == "Photos confirm it."
    assert run["approvals"][0]["decidedBy"]["name"] == REVIEWER
    assert len(stack.refunds("ORD-1001")) == 1


def test_the_run_page_follows_the_event_stream_while_someone_else_approves(stack, new_page):
    run_id = stack.start_run("Refund ORD-1004, wrong size. [ui-live]", customer="marcus.oconnell@example.net")
    [pending] = stack.wait_status(run_id, "awaiting_approval")["pendingApprovals"]
    page = open_app(new_page, stack, f"#/runs/{run_id}")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.reload()
    page.locator('ol.timeline li[data-kind="approval_requested"]').wait_for(timeout=30_000)
    assert "ORD-1004" in page.locator('ol.timeline li[data-kind="approval_requested"]').inner_text()
    page.locator(f"[data-approval='{pending['id']}']").wait_for()
    page.get_by_text("Live: updates as the run goes.").wait_for()
    # another reviewer decides elsewhere (the API, not this page): the page learns it from GET .../events
    answer = http("POST", stack.url(f"/api/runs/{run_id}/approvals/{pending['id']}"),
                  {"approved": True, "comment": "Size swap confirmed."}, user=REVIEWER)
    assert answer.status == 202, answer.body
    page.locator('ol.timeline li[data-kind="output"]').wait_for(timeout=60_000)
    page.locator("h2 .badge-completed").wait_for(timeout=30_000)
    assert "Size swap confirmed." in page.locator("main").inner_text()
    kinds = page.locator("ol.timeline li").evaluate_all("items => items.map(i => i.dataset.kind)")
    assert kinds.index("approval_requested") < kinds.index("approval_decided") < kinds.index("output"), kinds
    ids = page.locator("ol.timeline li").evaluate_all("items => items.map(i => i.dataset.id)")
    assert len(ids) == len(set(ids)) == len(kinds), ids  # no entry shown twice
    events = [u for u in requests if f"/api/runs/{run_id}/events" in u]
    timelines = [u for u in requests if u.endswith(f"/api/runs/{run_id}/timeline")]
    assert events and len(timelines) == 1, (events, timelines)  # live through the stream, not by re-reading
    page.wait_for_timeout(1500)
    assert page.get_by_text("Live: updates as the run goes.").count() == 0  # the stream ended (204)
    screenshot(page, "run-live")


def test_outside_loopback_a_401_offers_sign_in_and_the_page_sends_no_developer_identity(stack, new_page):
    page = new_page()
    sent: list[dict[str, str]] = []
    page.on("request", lambda r: sent.append(r.headers) if "/api/approvals" in r.url else None)
    page.goto(stack.url("/api/ui/").replace("127.0.0.1", NON_LOOPBACK_HOST) + "#/inbox")
    link = page.get_by_role("link", name="Sign in with Microsoft Entra ID")
    link.wait_for()
    assert link.get_attribute("href") == "/.auth/login/aad?post_login_redirect_uri=%2Fapi%2Fui%2F%23%2Finbox"
    assert page.get_by_label("Function key").is_visible() and not page.get_by_label("Acting as").is_visible()
    assert sent and all("x-dev-user" not in h for h in sent)  # the developer identity is for loopback only
    screenshot(page, "sign-in")


def test_inbox_reject_with_a_comment(stack, new_page):
    run_id = stack.start_run("Refund ORD-1003 please. [ui-reject]", customer="amelia.chen@example.com")
    [pending] = stack.wait_status(run_id, "awaiting_approval")["pendingApprovals"]
    page = open_app(new_page, stack)
    item = card(page, pending["id"])
    item.get_by_label("Comment (optional)").fill("Outside the return window.")
    # keyboard only: focus the Reject button and press Enter
    item.get_by_role("button", name="Reject").focus()
    page.keyboard.press("Enter")
    decided = card(page, pending["id"], "#decided")
    decided.wait_for()
    assert "rejected" in decided.inner_text().lower() and "Outside the return window." in decided.inner_text()
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["output"] == "The refund was not approved."
    assert run["approvals"][0]["decision"] == "rejected"
    assert stack.refunds("ORD-1003") == []


def test_runs_list_filters_and_pages(stack, new_page):
    # ids that sort in start order: runs created within one second are listed by id, descending (listing.py)
    ids = [stack.start_run(f"Say hello {n}. [ui-list]", run_id=f"ui-list-{n}", customer="pieter.vandijk@example.nl")
           for n in range(3)]
    for run_id in ids:
        stack.wait_status(run_id, "completed")
    page = open_app(new_page, stack, "#/runs")
    page.locator("table.runs tbody tr").first.wait_for()
    page.get_by_label("Agent").select_option("support")
    page.get_by_label("Status").select_option("completed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"agent=support&status=completed"))
    page.locator("table.runs tbody tr").first.wait_for()
    statuses = page.locator("table.runs tbody td[data-label='Status']").all_inner_texts()
    assert statuses and {s.strip().lower() for s in statuses} == {"completed"}
    listed = page.locator("table.runs tbody td[data-label='Id']").all_inner_texts()
    assert listed[:3] == ids[::-1]  # newest first
    screenshot(page, "runs-list")

    page.goto(stack.url("/api/ui/") + "#/runs?agent=support&status=completed&top=1")
    seen = []
    for n in range(3):
        page.locator("table.runs tbody tr").first.wait_for()
        rows = page.locator("table.runs tbody td[data-label='Id']").all_inner_texts()
        assert len(rows) == 1
        seen.append(rows[0])
        if n == 2:
            break
        page.get_by_role("link", name="Next page").click()
        page.wait_for_function("(prev) => !document.body.innerText.includes(prev)", arg=rows[0])
    assert seen == ids[::-1]
    assert page.get_by_role("link", name="First page").is_visible()


def test_api_problems_show_their_detail(stack, new_page):
    page = open_app(new_page, stack, user=None)
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "needs an authenticated caller" in alert.inner_text()
    page.goto(stack.url("/api/ui/") + "#/runs/no-such-run")
    page.get_by_label("Acting as").fill(REVIEWER)
    page.get_by_role("button", name="Use").first.click()
    assert "There is no run with id 'no-such-run'" in page.get_by_role("alert").inner_text()


def test_an_approval_nobody_decides_shows_as_expired(tmp_path, new_page):
    app = AppStack(tmp_path, SCRIPT, env={"APPROVAL_TIMEOUT": "PT3S"})
    try:
        run_id = app.start_run("Refund ORD-1010. [ui-timeout]", customer="pieter.vandijk@example.nl")
        [pending] = app.wait_status(run_id, "awaiting_approval")["pendingApprovals"]
        page = open_app(new_page, app)
        expired = card(page, pending["id"], "#decided")
        expired.wait_for(timeout=60_000)
        assert "expired" in expired.inner_text().lower()
        assert expired.locator(".badge-expired").count() == 1
        assert expired.get_by_role("button").count() == 0
        screenshot(page, "inbox-expired")
        run = app.wait_status(run_id, "completed", "failed")
        assert run["approvals"][0]["decision"] == "expired"
        # the API agrees
        answer = http("GET", app.url("/api/approvals?state=decided"))
        assert [a["state"] for a in answer.json["approvals"]] == ["expired"]
    finally:
        app.close()
