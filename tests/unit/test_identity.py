"""Caller identity from App Service authentication (durable_agents._identity) with real header shapes.

App Service authentication (Easy Auth) validates the Entra ID token and passes the caller to the app in
``X-MS-CLIENT-PRINCIPAL`` (base64 of ``{"auth_typ", "name_typ", "role_typ", "claims": [{"typ", "val"}]}``),
``X-MS-CLIENT-PRINCIPAL-ID`` (object id), ``-NAME`` and ``-IDP``. :func:`principal_headers` builds exactly that;
the HTTP API tests use it too.
"""

import base64
import json
from collections.abc import Iterable
from typing import Any

import azure.functions as func
import pytest

from durable_agents._identity import Caller, caller_from_request, platform_identity_trusted, setting_list

NAME_TYP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
OID_TYP = "http://schemas.microsoft.com/identity/claims/objectidentifier"
NAMEID_TYP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
EMAIL_TYP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
ROLE_URI_TYP = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def encode_principal(document: Any) -> str:
    """``X-MS-CLIENT-PRINCIPAL``: standard base64 of the compact JSON, as App Service sends it."""
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def entra_claims(*, oid: str, name: str | None = None, preferred_username: str | None = None,
                 email: str | None = None, roles: Iterable[str] = (), groups: Iterable[str] = (),
                 extra: Iterable[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """The claims App Service lists for an Entra ID v2 token (long URIs where it maps them, like the real ones)."""
    claims = [
        ("aud", "api://durable-agents"), ("iss", f"https://login.microsoftonline.com/{TENANT}/v2.0"),
        ("iat", "1767225600"), ("nbf", "1767225600"), ("exp", "1767229200"),
        (OID_TYP, oid), (NAMEID_TYP, f"sub-{oid}"), ("http://schemas.microsoft.com/identity/claims/tenantid", TENANT),
        ("ver", "2.0"),
    ]
    if name is not None:
        claims.append(("name", name))
    if preferred_username is not None:
        claims.append(("preferred_username", preferred_username))
    if email is not None:
        claims.append((EMAIL_TYP, email))
    claims += [("roles", role) for role in roles]
    claims += [("groups", group) for group in groups]
    claims += list(extra)
    return [{"typ": typ, "val": val} for typ, val in claims]


def principal_headers(*, oid: str, name: str | None = None, email: str | None = None,
                      preferred_username: str | None = None, roles: Iterable[str] = (),
                      groups: Iterable[str] = (), role_typ: str = "roles", with_id_header: bool = True,
                      name_header: str | None = None, extra_claims: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """The four headers App Service adds for an Entra ID caller.

    ``-NAME`` is ``name_header`` when given, else the preferred username (what App Service puts there for users),
    else the name; ``with_id_header=False`` leaves ``-ID`` out (claim fallback)."""
    claims = entra_claims(oid=oid, name=name, preferred_username=preferred_username, email=email, roles=roles,
                          groups=groups, extra=extra_claims)
    document = {"auth_typ": "aad", "name_typ": NAME_TYP, "role_typ": role_typ, "claims": claims}
    headers = {"X-MS-CLIENT-PRINCIPAL": encode_principal(document), "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}
    shown_name = name_header if name_header is not None else (preferred_username or name)
    if shown_name is not None:
        headers["X-MS-CLIENT-PRINCIPAL-NAME"] = shown_name
    if with_id_header:
        headers["X-MS-CLIENT-PRINCIPAL-ID"] = oid
    return headers


def request(headers: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest("GET", "http://localhost:7071/api/runs", headers=headers, params={}, body=b"")


@pytest.fixture(autouse=True)
def _settings(monkeypatch):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    for name in ("APPROVER_ROLES", "APPROVER_GROUPS", "SUPPORT_ROLES", "SUPPORT_GROUPS"):
        monkeypatch.delenv(name, raising=False)


USER_OID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
APP_OID = "9a1b6c52-1d7e-4e43-8f37-5b8d0f6a2c10"
GROUP_APPROVERS = "0b1c2d3e-0000-4000-8000-00000000a001"


def test_an_entra_user_with_roles_and_groups():
    headers = principal_headers(oid=USER_OID, name="Ann Example", preferred_username="Ann@Contoso.com",
                                roles=("Approver", "Reader"), groups=(GROUP_APPROVERS, "other-group"))
    caller = caller_from_request(request(headers))
    assert caller == Caller(id=USER_OID, name="Ann@Contoso.com", email="ann@contoso.com",
                            roles=frozenset({"Approver", "Reader"}),
                            groups=frozenset({GROUP_APPROVERS, "other-group"}), idp="aad")
    assert caller.is_approver and not caller.is_support
    assert caller.principal() == {"id": USER_OID, "name": "Ann@Contoso.com"}


def test_header_names_are_case_insensitive_as_the_host_passes_them():
    headers = {k.lower(): v for k, v in principal_headers(oid=USER_OID, name="Ann", roles=("Support",)).items()}
    caller = caller_from_request(request(headers))
    assert caller is not None and caller.id == USER_OID and caller.is_support


def test_a_service_principal_with_an_app_role():
    # Client-credentials token: no name, no email; the app role in "roles", appid / azp identify the client.
    headers = principal_headers(oid=APP_OID, roles=("Approver",), name_header=APP_OID,
                                extra_claims=(("appid", "11111111-2222-3333-4444-555555555555"),
                                              ("azp", "11111111-2222-3333-4444-555555555555"), ("idtyp", "app")))
    caller = caller_from_request(request(headers))
    assert caller is not None
    assert caller.id == APP_OID and caller.name == APP_OID and caller.email is None
    assert caller.roles == frozenset({"Approver"}) and caller.is_approver and not caller.is_support


def test_roles_under_the_principal_s_role_typ_count_too():
    headers = principal_headers(oid=USER_OID, role_typ=ROLE_URI_TYP,
                                extra_claims=((ROLE_URI_TYP, "Support"), ("customRole", "Approver")))
    caller = caller_from_request(request(headers))
    assert caller is not None and caller.roles == frozenset({"Support"})
    custom = principal_headers(oid=USER_OID, role_typ="customRole", extra_claims=(("customRole", "Approver"),))
    assert caller_from_request(request(custom)).roles == frozenset({"Approver"})


def test_without_the_id_header_the_object_id_claim_is_the_id():
    headers = principal_headers(oid=USER_OID, name="Ann", with_id_header=False)
    assert caller_from_request(request(headers)).id == USER_OID
    # Without an object id claim, the name identifier claim.
    document = {"auth_typ": "aad", "name_typ": NAME_TYP, "role_typ": "roles",
                "claims": [{"typ": NAMEID_TYP, "val": "sub-123"}, {"typ": "name", "val": "Ann"}]}
    caller = caller_from_request(request({"X-MS-CLIENT-PRINCIPAL": encode_principal(document)}))
    assert caller is not None and caller.id == "sub-123" and caller.name == "Ann" and caller.idp == "aad"


def test_no_id_at_all_or_an_oversized_id_is_no_caller():
    document = {"auth_typ": "aad", "claims": [{"typ": "name", "val": "Ann"}]}
    assert caller_from_request(request({"X-MS-CLIENT-PRINCIPAL": encode_principal(document)})) is None
    headers = principal_headers(oid=USER_OID)
    headers["X-MS-CLIENT-PRINCIPAL-ID"] = "x" * 257
    assert caller_from_request(request(headers)) is None
    headers["X-MS-CLIENT-PRINCIPAL-ID"] = "x" * 256
    assert caller_from_request(request(headers)).id == "x" * 256


def test_no_headers_is_no_caller():
    assert caller_from_request(request({})) is None


@pytest.mark.parametrize(
    "principal",
    [
        "!!!not base64!!!",
        base64.b64encode(b"{not json").decode(),
        base64.b64encode(b"\xff\xfe\xfd").decode(),
        base64.b64encode(b'["a", "list"]').decode(),
        base64.b64encode(b'"a string"').decode(),
        "",  # an empty header counts as absent: the id header alone identifies nobody with roles
    ],
)
def test_a_malformed_principal_is_no_caller(principal):
    headers = principal_headers(oid=USER_OID, roles=("Approver",))
    headers["X-MS-CLIENT-PRINCIPAL"] = principal
    caller = caller_from_request(request(headers))
    if principal == "":
        assert caller is not None and caller.id == USER_OID and caller.roles == frozenset()
    else:
        assert caller is None


def test_an_oversized_principal_header_is_no_caller():
    padding = [("x-padding", "p" * 200)] * 80
    headers = principal_headers(oid=USER_OID, roles=("Approver",), extra_claims=padding)
    assert len(headers["X-MS-CLIENT-PRINCIPAL"]) > 16_384
    assert caller_from_request(request(headers)) is None
    fits = principal_headers(oid=USER_OID, roles=("Approver",), extra_claims=padding[:40])
    assert len(fits["X-MS-CLIENT-PRINCIPAL"]) < 16_384
    assert caller_from_request(request(fits)).is_approver


def test_claims_that_are_not_typ_val_strings_are_ignored():
    document = {"auth_typ": "aad", "role_typ": "roles",
                "claims": [{"typ": "roles", "val": 7}, {"typ": "roles"}, "Approver", None,
                           {"typ": "roles", "val": "Support"}]}
    headers = {"X-MS-CLIENT-PRINCIPAL": encode_principal(document), "X-MS-CLIENT-PRINCIPAL-ID": USER_OID}
    assert caller_from_request(request(headers)).roles == frozenset({"Support"})


@pytest.mark.parametrize("value", [None, "", "false", "0", "yes", "1"])
def test_headers_are_not_trusted_unless_the_platform_authenticates(monkeypatch, value):
    # Without App Service authentication anyone can send these headers: a forged approver is nobody.
    if value is None:
        monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    else:
        monkeypatch.setenv("WEBSITE_AUTH_ENABLED", value)
    assert not platform_identity_trusted()
    headers = principal_headers(oid=USER_OID, name="Mallory", roles=("Approver", "Support"))
    assert caller_from_request(request(headers)) is None


@pytest.mark.parametrize("value", ["True", "true", "TRUE", " true "])
def test_website_auth_enabled_true_in_any_case_is_trusted(monkeypatch, value):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", value)
    assert platform_identity_trusted()
    assert caller_from_request(request(principal_headers(oid=USER_OID))).id == USER_OID


def test_default_roles_are_approver_and_support():
    approver = caller_from_request(request(principal_headers(oid="a", roles=("Approver",))))
    support = caller_from_request(request(principal_headers(oid="s", roles=("Support",))))
    lowercase = caller_from_request(request(principal_headers(oid="l", roles=("approver", "support"))))
    assert approver.is_approver and not approver.is_support
    assert support.is_support and not support.is_approver
    assert not lowercase.is_approver and not lowercase.is_support  # app role values are case-sensitive


def test_approver_and_support_roles_and_groups_come_from_settings_read_per_call(monkeypatch):
    caller = caller_from_request(request(principal_headers(
        oid=USER_OID, roles=("Refunds.Approve", "Approver"), groups=(GROUP_APPROVERS,))))
    monkeypatch.setenv("APPROVER_ROLES", " Refunds.Approve , Other ")
    assert caller.is_approver
    monkeypatch.setenv("APPROVER_ROLES", "Other")
    assert not caller.is_approver  # "Approver" no longer counts once the setting names other roles
    monkeypatch.setenv("APPROVER_GROUPS", f"x, {GROUP_APPROVERS}")
    assert caller.is_approver
    assert not caller.is_support
    monkeypatch.setenv("SUPPORT_GROUPS", GROUP_APPROVERS)
    assert caller.is_support
    monkeypatch.delenv("SUPPORT_GROUPS")
    monkeypatch.setenv("SUPPORT_ROLES", "Refunds.Approve")
    assert caller.is_support
    monkeypatch.setenv("SUPPORT_ROLES", " , ")  # blank: the default "Support"
    assert not caller.is_support


def test_setting_list_strips_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("X_LIST", " a, ,b ,, c")
    assert setting_list("X_LIST") == frozenset({"a", "b", "c"})
    monkeypatch.delenv("X_LIST")
    assert setting_list("X_LIST", "d1,d2") == frozenset({"d1", "d2"})
    assert setting_list("X_LIST") == frozenset()


def test_email_prefers_the_email_claim_and_is_lower_cased():
    headers = principal_headers(oid=USER_OID, name="Ann", preferred_username="ann.upn@contoso.com",
                                extra_claims=(("email", "Ann.Mail@Contoso.COM"),))
    assert caller_from_request(request(headers)).email == "ann.mail@contoso.com"


def test_email_falls_back_to_preferred_username_then_upn_then_the_name_header():
    preferred = principal_headers(oid=USER_OID, name="Ann", preferred_username="Ann@Contoso.com")
    assert caller_from_request(request(preferred)).email == "ann@contoso.com"
    upn = principal_headers(oid=USER_OID, name="Ann", extra_claims=(("upn", "ann.upn@contoso.com"),))
    assert caller_from_request(request(upn)).email == "ann.upn@contoso.com"
    mapped = principal_headers(oid=USER_OID, name="Ann", email="ann.mapped@contoso.com")
    assert caller_from_request(request(mapped)).email == "ann.mapped@contoso.com"
    header_only = principal_headers(oid=USER_OID, name_header="Ann@Fabrikam.com")
    assert caller_from_request(request(header_only)).email == "ann@fabrikam.com"


@pytest.mark.parametrize("value", ["Ann Example", "ann@", "@contoso.com", "ann@contoso", "a b@contoso.com",
                                   "ann@@contoso.com", "x" * 65 + "@contoso.com"])
def test_values_that_are_not_email_addresses_give_no_email(value):
    headers = principal_headers(oid=USER_OID, name_header=value, extra_claims=(("email", value),))
    caller = caller_from_request(request(headers))
    assert caller is not None and caller.email is None


def test_a_name_longer_than_256_characters_is_cut():
    caller = caller_from_request(request(principal_headers(oid=USER_OID, name_header="n" * 300)))
    assert caller.name == "n" * 256
