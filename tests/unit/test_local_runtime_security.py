"""The local runtime's HTTP-trigger front: App Service authentication emulation (principal headers stripped, a
developer identity from ``X-Dev-User`` on loopback only), problem+json for unrouted paths, wrong methods and
over-long requests, requests aiohttp's parser cannot parse, and no query string in answers or logs.

A small function app is written to a temporary folder and served by ``python -m local_runtime`` (a separate
process); requests go over real HTTP on loopback (raw sockets where a client library would normalise the path).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from local_runtime import problems
from local_runtime.identity import (
    DEFAULT_DEV_ROLES,
    NAMEIDENTIFIER_CLAIM,
    InvalidDevIdentity,
    identity_headers,
    is_loopback_peer,
)
from local_runtime.problems import MAX_URL_BYTES, PARSER_LIMITS, ProblemAppRunner
from tests.support.runtime_process import RuntimeProcess

SECRET = "Zq7SecretKey"   # goes into query strings; must never come back in a body or a log line

ECHO_APP = textwrap.dedent('''
    import json
    import os

    import azure.durable_functions as df
    import azure.functions as func

    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


    @app.route(route="echo/{*rest}", methods=["GET", "POST"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({"headers": dict(req.headers), "route": dict(req.route_params),
                                             "authEnabled": os.environ.get("WEBSITE_AUTH_ENABLED")}),
                                 mimetype="application/json")


    @app.route(route="runs/{run_id}", methods=["GET"])
    def run(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({"run": req.route_params["run_id"]}), mimetype="application/json")


    @app.route(route="runs/{run_id}/decision", methods=["POST", "PUT"])
    def decide(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")
''')


class _Runtime(RuntimeProcess):
    """RuntimeProcess with extra CLI arguments (``--no-auth``, ``--host``)."""

    def __init__(self, app_dir: Path, extra: list[str], **kwargs):
        super().__init__(app_dir, **kwargs)
        self.extra = extra

    def command(self) -> list[str]:
        return super().command() + self.extra


def _app(tmp_path_factory) -> Path:
    app_dir = tmp_path_factory.mktemp("sec-app")
    (app_dir / "function_app.py").write_text(ECHO_APP)
    (app_dir / "host.json").write_text(json.dumps({"version": "2.0",
                                                   "extensions": {"http": {"routePrefix": "api"}}}))
    return app_dir


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory) -> Path:
    return _app(tmp_path_factory)


@pytest.fixture(scope="module")
def rt(app_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("sec-rt")
    with _Runtime(app_dir, [], state=work / "state.sqlite3", log_path=work / "runtime.log",
                  env={"WEBSITE_AUTH_ENABLED": "False"}) as proc:
        yield proc


def http(url: str, method: str = "GET", headers: dict | None = None):
    """``(status, headers, body bytes)`` for a request through urllib."""
    req = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def raw_http(port: int, request: bytes, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` bytes as they are (no path normalisation); return status, headers (lower case), body."""
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def get(port: int, target: str, extra: str = "") -> tuple[int, dict[str, str], bytes]:
    return raw_http(port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())


def echo(rt: RuntimeProcess, headers: dict) -> dict:
    code, _, body = http(rt.url("/api/echo/x"), headers=headers)
    assert code == 200, body
    return json.loads(body)


def principal(seen: dict) -> dict:
    return json.loads(base64.b64decode(seen["headers"]["x-ms-client-principal"]))


def assert_problem(status: int, headers: dict, body: bytes, code: int, kind: str, instance: str | None) -> dict:
    assert status == code, body
    ctype = {k.lower(): v for k, v in headers.items()}["content-type"]
    assert ctype.startswith("application/problem+json"), ctype
    doc = json.loads(body)
    assert doc["type"] == f"urn:durable-agents:problem:{kind}" and doc["status"] == code
    assert doc["title"] and doc["detail"] and doc.get("instance") == instance
    assert SECRET not in body.decode()
    return doc


# ---------------- identity emulation ----------------
def test_forged_principal_headers_are_stripped_and_auth_is_announced(rt):
    seen = echo(rt, {"X-MS-CLIENT-PRINCIPAL": "Zm9yZ2Vk", "x-ms-client-principal-id": "admin",
                     "X-Ms-Client-Principal-Name": "root", "X-MS-CLIENT-PRINCIPAL-IDP": "aad", "X-Other": "kept"})
    names = {k.lower() for k in seen["headers"]}
    assert not any(n.startswith("x-ms-client-principal") for n in names)
    assert seen["headers"]["x-other"] == "kept"
    # the runtime set it although the inherited environment said False
    assert seen["authEnabled"] == "True"


def test_dev_user_on_loopback_gets_a_principal_with_the_default_roles(rt):
    seen = echo(rt, {"X-Dev-User": "alice@contoso.com", "X-MS-CLIENT-PRINCIPAL-ID": "forged"})
    h = seen["headers"]
    assert h["x-ms-client-principal-id"] == "dev-alice@contoso.com"
    assert h["x-ms-client-principal-name"] == "alice@contoso.com"
    assert h["x-ms-client-principal-idp"] == "dev"
    assert not any(k.lower().startswith("x-dev-") for k in h)
    doc = principal(seen)
    assert set(doc) == {"auth_typ", "claims", "name_typ", "role_typ"}
    assert doc["role_typ"] == "roles" and doc["name_typ"] == "name"
    assert all(set(c) == {"typ", "val"} for c in doc["claims"])
    claims = [(c["typ"], c["val"]) for c in doc["claims"]]
    assert claims == [(NAMEIDENTIFIER_CLAIM, "dev-alice@contoso.com"), ("name", "alice@contoso.com"),
                      ("preferred_username", "alice@contoso.com"), ("roles", "Approver"), ("roles", "Support")]
    assert list(DEFAULT_DEV_ROLES) == ["Approver", "Support"]


def test_dev_roles_header_sets_or_clears_the_roles(rt):
    doc = principal(echo(rt, {"X-Dev-User": "bob", "X-Dev-Roles": "Auditor, ops.team"}))
    assert [c["val"] for c in doc["claims"] if c["typ"] == "roles"] == ["Auditor", "ops.team"]
    # an empty X-Dev-Roles header: no roles at all (urllib drops empty headers, so send it raw)
    status, _, body = get(rt.port, "/api/echo/x", "X-Dev-User: bob\r\nX-Dev-Roles:\r\n")
    assert status == 200
    doc = json.loads(base64.b64decode(json.loads(body)["headers"]["x-ms-client-principal"]))
    assert [c for c in doc["claims"] if c["typ"] == "roles"] == []
    assert doc["claims"][0] == {"typ": NAMEIDENTIFIER_CLAIM, "val": "dev-bob"}


@pytest.mark.parametrize("headers", [
    {"X-Dev-User": "al ice"}, {"X-Dev-User": "a" * 65}, {"X-Dev-User": "eve", "X-Dev-Roles": "Approver,,Support"},
    {"X-Dev-User": "eve", "X-Dev-Roles": "bad role"}, {"X-Dev-User": "eve", "X-Dev-Roles": "r" * 65},
    {"X-Dev-User": "ev/e"}])
def test_invalid_dev_identity_is_a_400_problem(rt, headers):
    status, rh, body = http(rt.url(f"/api/echo/x?code={SECRET}"), headers=headers)
    assert_problem(status, rh, body, 400, "invalid-dev-identity", "/api/echo/x")
    for value in headers.values():
        assert value not in json.loads(body)["detail"]


def test_dev_user_sent_twice_is_a_400_problem(rt):
    status, headers, body = get(rt.port, "/api/echo/x", "X-Dev-User: a\r\nX-Dev-User: b\r\n")
    assert_problem(status, headers, body, 400, "invalid-dev-identity", "/api/echo/x")


def test_peer_check_uses_the_socket_address():
    for peer in [("127.0.0.1", 5000), ("127.8.9.10", 1), ("::1", 5000, 0, 0), ("::ffff:127.0.0.1", 80, 0, 0)]:
        assert is_loopback_peer(peer), peer
    for peer in [("192.0.2.7", 5000), ("10.0.0.1", 1), ("::2", 1, 0, 0), ("fe80::1%eth0", 1, 0, 2), None, "",
                 ("localhost", 1), ()]:
        assert not is_loopback_peer(peer), peer
    forged = [("X-Dev-User", "mallory"), ("X-Forwarded-For", "127.0.0.1"), ("X-MS-CLIENT-PRINCIPAL-ID", "x")]
    assert identity_headers(forged, ("192.0.2.7", 4000), enabled=True) == {"X-Forwarded-For": "127.0.0.1"}
    injected = identity_headers(forged, ("127.0.0.1", 4000), enabled=True)
    assert injected["X-MS-CLIENT-PRINCIPAL-ID"] == "dev-mallory"
    # not validated (so no error) when it is ignored anyway
    assert identity_headers([("X-Dev-User", "bad user")], ("192.0.2.7", 1), enabled=True) == {}
    with pytest.raises(InvalidDevIdentity):
        identity_headers([("X-Dev-User", "bad user")], ("127.0.0.1", 1), enabled=True)


def _non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine that is not loopback (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_dev_headers_from_a_non_loopback_peer_are_ignored(app_dir, tmp_path):
    addr = _non_loopback_ipv4()
    if addr is None:
        pytest.skip("no non-loopback IPv4 address here (test_peer_check_uses_the_socket_address covers the check)")
    with _Runtime(app_dir, ["--host", "0.0.0.0"], state=tmp_path / "s.sqlite3",
                  log_path=tmp_path / "rt.log") as proc:
        req = (b"GET /api/echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Dev-User: mallory\r\n"
               b"X-Dev-Roles: Approver\r\nX-Forwarded-For: 127.0.0.1\r\nX-MS-CLIENT-PRINCIPAL-ID: forged\r\n\r\n")
        status, _, body = raw_http(proc.port, req, host=addr)
        assert status == 200, body
        seen = json.loads(body)["headers"]
        assert not any(k.lower().startswith(("x-ms-client-principal", "x-dev-")) for k in seen), seen
        # the same request over loopback does get the developer principal
        status, _, body = raw_http(proc.port, req, host="127.0.0.1")
        assert json.loads(body)["headers"]["x-ms-client-principal-id"] == "dev-mallory"


def test_no_auth_flag_injects_nothing_and_leaves_website_auth_enabled_unset(app_dir, tmp_path):
    with _Runtime(app_dir, ["--no-auth"], state=tmp_path / "s.sqlite3", log_path=tmp_path / "rt.log",
                  env={"WEBSITE_AUTH_ENABLED": "True"}) as proc:
        code, _, body = http(proc.url("/api/echo/x"), headers={"X-Dev-User": "alice", "X-Dev-Roles": "Approver",
                                                               "X-MS-CLIENT-PRINCIPAL": "Zm9yZ2Vk"})
        assert code == 200
        seen = json.loads(body)
        assert seen["authEnabled"] is None
        assert not any(k.lower().startswith(("x-ms-client-principal", "x-dev-")) for k in seen["headers"])
        # invalid dev headers are not an error when the emulation is off
        assert http(proc.url("/api/echo/x"), headers={"X-Dev-User": "a b"})[0] == 200


# ---------------- problem+json ----------------
@pytest.mark.parametrize("target, instance", [
    (f"/api/nothing?code={SECRET}", "/api/nothing"),
    ("/api/runs/%2e%2e", "/api/runs/%2e%2e"),
    ("/api/runs/.%2E", "/api/runs/.%2E"),
    (f"/api/runs/..?code={SECRET}", "/api/runs/.."),
    ("/api/../api/runs/x", "/api/../api/runs/x"),
    ("/api/runs/a%2Fb", "/api/runs/a%2Fb"),
    ("/api/echo/a%2fb", "/api/echo/a%2fb"),
    ("/api/runs/a%5Cb", "/api/runs/a%5Cb"),
    ("/api/runs/x/extra", "/api/runs/x/extra"),
    ("/nothing", "/nothing"),
])
def test_unrouted_paths_are_404_problems(rt, target, instance):
    status, headers, body = get(rt.port, target)
    assert_problem(status, headers, body, 404, "route-not-found", instance)


def test_routed_paths_still_reach_their_functions(rt):
    status, _, body = get(rt.port, f"/api/runs/r-1?code={SECRET}")
    assert status == 200 and json.loads(body) == {"run": "r-1"}
    status, _, body = get(rt.port, "/api/echo/a/b/c.txt")
    assert status == 200 and json.loads(body)["route"] == {"rest": "a/b/c.txt"}


def test_wrong_method_is_a_405_problem_with_allow(rt):
    status, headers, body = http(rt.url(f"/api/runs/r-1?code={SECRET}"), method="DELETE")
    assert_problem(status, headers, body, 405, "method-not-allowed", "/api/runs/r-1")
    assert headers["Allow"] == "GET"
    status, headers, body = http(rt.url("/api/runs/r-1/decision"), method="GET")
    assert_problem(status, headers, body, 405, "method-not-allowed", "/api/runs/r-1/decision")
    assert headers["Allow"] == "POST, PUT"


def test_over_long_url_is_a_414_problem(rt):
    path = "/api/echo/" + "a" * MAX_URL_BYTES
    status, headers, body = get(rt.port, f"{path}?code={SECRET}")
    doc = assert_problem(status, headers, body, 414, "uri-too-long", path[:256])
    assert len(doc["instance"]) == 256
    ok_path = "/api/echo/" + "a" * 7000
    assert get(rt.port, ok_path)[0] == 200                            # under the limit still served
    # query strings count too, and are not echoed
    status, headers, body = get(rt.port, f"/api/echo/x?code={SECRET}&pad={'p' * MAX_URL_BYTES}")
    assert_problem(status, headers, body, 414, "uri-too-long", "/api/echo/x")


def test_over_large_headers_are_a_431_problem(rt):
    big = "X-Big: " + "b" * (40 * 1024) + "\r\n"
    status, headers, body = get(rt.port, f"/api/echo/x?code={SECRET}", big)
    assert_problem(status, headers, body, 431, "headers-too-large", "/api/echo/x")
    many = "".join(f"X-H{i}: v\r\n" for i in range(120))
    status, headers, body = get(rt.port, "/api/echo/x", many)
    assert_problem(status, headers, body, 431, "headers-too-large", "/api/echo/x")
    status, _, _ = get(rt.port, "/api/echo/x", "X-Big: " + "b" * (16 * 1024) + "\r\n")
    assert status == 200


def test_logs_never_contain_a_query_string(rt):
    marker = SECRET + "Log"
    assert get(rt.port, f"/api/runs/r-9?code={marker}")[0] == 200
    assert get(rt.port, f"/api/missing?code={marker}")[0] == 404
    # a request line aiohttp cannot parse: its error text would quote the line
    status, _, _ = raw_http(rt.port, f"GET /api/runs/r?code={marker}\x01 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 400
    log = rt.log_text()
    assert "Executing HTTP function 'run' (GET /api/runs/r-9)" in log
    assert "Error handling a request (" in log
    assert marker not in log


# ---------------- requests aiohttp's parser rejects ----------------

MALFORMED = [   # (id, raw request, status, problem code); every one carries SECRET somewhere
    ("request-line-over-parser-limit",
     b"GET /api/echo/" + b"a" * (300 * 1024) + f"?code={SECRET} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
     414, "uri-too-long"),
    ("header-line-over-parser-limit",
     f"GET /api/echo/x?code={SECRET} HTTP/1.1\r\nHost: x\r\nX-Big: {SECRET}".encode()
     + b"b" * (PARSER_LIMITS.max_field_size + 1) + b"\r\n\r\n", 431, "headers-too-large"),
    ("more-headers-than-the-parser-takes",
     f"GET /api/echo/x?code={SECRET} HTTP/1.1\r\nHost: x\r\n".encode()
     + b"".join(b"X-H%d: v\r\n" % i for i in range(PARSER_LIMITS.max_headers + 10)) + b"\r\n",
     431, "headers-too-large"),
    ("space-in-header-name",
     f"GET /api/echo/x?code={SECRET} HTTP/1.1\r\nHost: x\r\nBad Name: {SECRET}\r\n\r\n".encode(),
     400, "bad-request"),
    ("non-numeric-content-length",
     f"POST /api/echo/x?code={SECRET} HTTP/1.1\r\nHost: x\r\nContent-Length: 1{SECRET}\r\n\r\n".encode(),
     400, "bad-request"),
    ("unknown-http-version", f"GET /api/echo/x?code={SECRET} HTTP/9.9\r\nHost: x\r\n\r\n".encode(),
     400, "bad-request"),
    ("control-byte-in-request-target",
     f"GET /api/echo/x?code={SECRET}\x01 HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400, "bad-request"),
    ("garbage", b"\x16\x03\x01\x00\xff" + SECRET.encode() + b"\x00 not http\r\n\r\n", 400, "bad-request"),
]


@pytest.mark.parametrize(("request_bytes", "code", "kind"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_unparsable_requests_are_problems_without_the_request_in_body_or_log(rt, request_bytes, code, kind):
    status, headers, body = raw_http(rt.port, request_bytes)
    doc = assert_problem(status, headers, body, code, kind, None)   # the path is not known: no instance
    assert "code=" not in doc["detail"] and "/api/echo" not in body.decode()
    assert headers.get("connection", "close").lower() != "keep-alive"
    assert get(rt.port, "/api/echo/x")[0] == 200                     # the host keeps serving
    log = rt.log_text()
    assert "Error handling a request (" in log
    assert SECRET not in log


async def _serve_and_send(requests: list[bytes]) -> tuple[list[bytes], str]:
    """Serve a bare app (``GET /`` ok, ``GET /boom`` raises) with :class:`ProblemAppRunner`; send each raw
    request on its own connection; return the raw answers and what ``aiohttp.server`` logged."""
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError(f"handler failed {SECRET}")

    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/boom", boom)
    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    collect = _Collect(logging.DEBUG)
    collect.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    server_log = logging.getLogger("aiohttp.server")
    server_log.addHandler(collect)
    old_level = server_log.level
    server_log.setLevel(logging.DEBUG)
    runner = ProblemAppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    answers = []
    try:
        for raw in requests:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            await writer.drain()
            answers.append(await asyncio.wait_for(reader.read(), 30))
            writer.close()
    finally:
        await runner.cleanup()
        server_log.removeHandler(collect)
        server_log.setLevel(old_level)
    return answers, "\n".join(records)


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), {k.strip().lower(): v.strip() for k, _, v in
                                      (ln.partition(":") for ln in lines[1:])}, body


def test_problem_app_runner_answers_unparsable_requests_without_a_log_filter():
    """The aiohttp app alone (no host, no NoQueryLogFilter): the handler itself keeps the request out of the log;
    well-formed requests and a handler's 500 are aiohttp's own answers."""
    answers, log = asyncio.run(_serve_and_send(
        [m[1].replace(b"/api/echo/", b"/") for m in MALFORMED]
        + [b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
           b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]))
    for (_, _, code, kind), raw in zip(MALFORMED, answers[:len(MALFORMED)], strict=True):
        status, headers, body = _parse(raw)
        assert_problem(status, headers, body, code, kind, None)
    assert _parse(answers[-2])[::2] == (200, b"ok")
    status, headers, body = _parse(answers[-1])
    assert status == 500 and headers["content-type"].startswith("text/plain") and SECRET.encode() not in body
    assert log.count("Error handling a request (") == len(MALFORMED)
    assert "DEBUG Error handling a request (BadHttpMethod)" in log      # non-HTTP traffic: debug, as aiohttp
    assert SECRET not in log.replace(f"handler failed {SECRET}", "")   # only the app's own exception text


def test_problem_app_runner_defaults_to_the_parser_limits_and_checks_the_aiohttp_version(monkeypatch):
    assert PARSER_LIMITS.max_line_size != PARSER_LIMITS.max_field_size    # LineTooLong's limit tells 414 from 431
    assert problems._hook_supported("3.14.5") and problems._hook_supported("3.8.0")
    assert not problems._hook_supported("4.0.0a1") and not problems._hook_supported("3.7.4")
    assert not problems._hook_supported("dev")
    monkeypatch.setattr(problems, "_hook_supported", lambda version="": False)
    answers, _ = asyncio.run(_serve_and_send([MALFORMED[3][1].replace(b"/api/echo/", b"/")]))
    status, headers, _ = _parse(answers[0])
    assert status == 400 and headers["content-type"].startswith("text/plain")   # the documented fallback
