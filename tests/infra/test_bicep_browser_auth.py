"""Browser sign-in through App Service authentication for the inbox at ``/api/ui`` (README "The inbox (browser)").

What ``infra/`` must say so that a browser can open the page, sign in with Microsoft Entra ID and then call the JSON
API with the Easy Auth session cookie, while API clients keep getting 401 (never a 302) for a missing token:

* ``authsettingsV2`` excludes exactly the browser app's static paths (route ``ui/{*path}`` under host.json's
  ``routePrefix``) and nothing of the data API; ``Return401`` and ``requireHttps`` stay;
* the app registration's web redirect URI is ``https://<the site's defaultHostName>/.auth/login/aad/callback``
  (set in step 2, ``appregistrationuris.bicep``, after the site exists), with ID token issuance for the hybrid flow
  that the server-directed sign-in uses with the managed identity's federated credential as client assertion;
* the session cookie works without the token store (which stays off), with the documented 8-hour lifetime.

Matching rule of ``excludedPaths`` used below (the reference gives none; Microsoft's answer in
MicrosoftDocs/azure-docs#86514): an entry is one path, and an entry ending in ``/*`` also matches every path below
it. Every assertion reads pycep's JSON of the real files (``bicep_model``); interpolated strings stay raw text.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.bicep_model import REPO_ROOT, auth_properties, dotted, excluded_by, load, module_call, one_resource

UI_PATHS = ["/api/ui", "/api/ui/", "/api/ui/*"]
MI_ASSERTION_SETTING = "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"
HTTP_ROUTES = REPO_ROOT / "durable_agents" / "_http" / "__init__.py"








def _route_prefix() -> str:
    return json.loads((REPO_ROOT / "host.json").read_text())["extensions"]["http"]["routePrefix"]


def _routes() -> list[str]:
    """Every ``route=`` the app registers (the HTTP blueprint), e.g. ``runs/{runId}``."""
    return re.findall(r'route="([^"]+)"', HTTP_ROUTES.read_text())


def _concrete(route: str) -> str:
    """A request path for ``route`` with every parameter filled in: ``/api/runs/r1``."""
    return "/" + _route_prefix() + "/" + re.sub(r"\{\*?[^}]+\}", "x1", route)


# ---------------------------------------------------------------- excluded paths


def test_only_the_browser_app_paths_are_excluded_from_authentication():
    excluded = auth_properties()["globalValidation"]["excludedPaths"]
    assert excluded == UI_PATHS
    # The UI route is the one these entries name: ui/{*path} under the host's route prefix.
    assert "ui/{*path}" in _routes()
    assert _route_prefix() == "api"
    for path in ("/api/ui", "/api/ui/", "/api/ui/index.html", "/api/ui/app.js", "/api/ui/style.css"):
        assert excluded_by(path, excluded), path


@pytest.mark.parametrize("route", [r for r in _routes() if not r.startswith("ui/")])
def test_no_data_route_of_the_api_isexcluded_by(route):
    excluded = auth_properties()["globalValidation"]["excludedPaths"]
    assert not excluded_by(_concrete(route), excluded), route
    assert not excluded_by("/" + _route_prefix() + "/" + route.split("/", 1)[0], excluded), route


def test_excluded_paths_name_no_broader_prefix_than_the_ui_folder():
    for entry in auth_properties()["globalValidation"]["excludedPaths"]:
        assert entry == "/api/ui" or entry.startswith("/api/ui/"), entry
        assert "*" not in entry[:-1], f"{entry}: only a trailing /* wildcard"
    for path in ("/", "/api", "/api/", "/api/uix", "/api/ui-admin", "/api/runs", "/api/approvals", "/.auth/me"):
        assert not excluded_by(path, auth_properties()["globalValidation"]["excludedPaths"]), path


# ---------------------------------------------------------------- API clients: still 401


def test_api_callers_without_a_token_still_get_401_not_a_redirect():
    props = auth_properties()
    validation = props["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert "redirectToProvider" not in validation  # only used with RedirectToLoginPage
    assert props["httpSettings"]["requireHttps"] is True
    site = one_resource(load("app/functionapp.bicep"), "Microsoft.Web/sites")
    assert site.body["properties"]["httpsOnly"] is True


# ---------------------------------------------------------------- sign-in: redirect URI and flow


def test_redirect_uri_is_the_callback_on_the_site_default_host_name():
    uris = one_resource(load("app/appregistrationuris.bicep"), "Microsoft.Graph/applications")
    assert uris.body["web"]["redirectUris"] == ["https://${appHostName}/.auth/login/aad/callback"]
    # appHostName is the site's own defaultHostName (right with or without secure unique default hostnames), so
    # step 2 runs after the site exists.
    params = module_call(load("main.bicep"), "appRegistrationUris")[1]["params"]
    assert dotted(params["appHostName"]) == "functionApp.outputs.hostName"
    assert dotted(load("app/functionapp.bicep")["outputs"]["hostName"]["value"]) == "site.properties.defaultHostName"
    # The same registration as step 1 and as the one Easy Auth signs in with.
    assert uris.body["uniqueName"] == "uniqueName"
    assert dotted(params["uniqueName"]) == "appRegistration.outputs.uniqueName"
    fa_params = module_call(load("main.bicep"), "functionApp")[1]["params"]
    assert dotted(fa_params["authClientId"]) == "appRegistration.outputs.clientId"


def test_step_one_leaves_web_to_step_two_instead_of_predicting_the_host_name():
    step1 = one_resource(load("app/appregistration.bicep"), "Microsoft.Graph/applications")
    assert "web" not in step1.body
    assert "redirectUris" not in json.dumps(step1.body)


def test_sign_in_uses_the_hybrid_flow_with_the_managed_identity_assertion():
    uris = one_resource(load("app/appregistrationuris.bicep"), "Microsoft.Graph/applications")
    grant = uris.body["web"]["implicitGrantSettings"]
    # Easy Auth's server-directed sign-in with a client credential asks for "code id_token" (hybrid flow), which
    # needs ID token issuance; access tokens never come from the authorize endpoint.
    assert grant["enableIdTokenIssuance"] is True
    assert grant.get("enableAccessTokenIssuance", False) is False
    doc = load("app/functionapp.bicep")
    registration = auth_properties()["identityProviders"]["azureActiveDirectory"]["registration"]
    setting = registration["clientSecretSettingName"]
    assert doc["variables"][setting]["value"] == MI_ASSERTION_SETTING  # a client credential: not the implicit flow


# ---------------------------------------------------------------- session cookie


def test_session_cookie_works_without_the_token_store_and_lasts_eight_hours():
    login = auth_properties()["login"]
    assert login["tokenStore"]["enabled"] is False
    assert login["cookieExpiration"] == {"convention": "FixedTime", "timeToExpiration": "08:00:00"}
    assert login["nonce"]["validateNonce"] is True
    # post_login_redirect_uri=/api/ui/ is relative: no external redirect target is allowed.
    assert "allowedExternalRedirectUrls" not in login
