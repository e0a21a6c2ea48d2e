"""The dashboard's door: `/` leads to it, the login link turns the token into a cookie, /docs works offline."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

SWITCHES = "/admin/api/observability"


def test_root_redirects_to_the_dashboard(server: ServerProcess) -> None:
    answer = httpx.get(server.url + "/")
    assert answer.status_code == 307 and answer.headers["location"] == "/dashboard"
    page = httpx.get(server.url + "/dashboard")
    assert page.status_code == 200 and "<title>aistack</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', page.text):
        assert httpx.get(server.url + asset).status_code == 200, asset
    assert httpx.get(server.url + "/dashboard/static/app.js").headers["content-type"].startswith("text/javascript")


def test_login_sets_an_httponly_strict_cookie_and_drops_the_token_from_the_address(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as browser:
        assert browser.post(SWITCHES, json={}).status_code == 403
        answer = browser.get("/dashboard/login", params={"token": server.admin_token})
        assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
        cookie = answer.headers["set-cookie"]
        assert "aistack_admin=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert browser.get("/dashboard/session").json()["admin"] is True
        assert browser.post(SWITCHES, json={}).status_code == 200  # the cookie alone is enough


def test_login_without_or_with_a_wrong_token_is_refused(server: ServerProcess) -> None:
    for params in ({}, {"token": ""}, {"token": "wrong"}, {"token": server.admin_token + "x"}):
        answer = httpx.get(server.url + "/dashboard/login", params=params)
        assert answer.status_code == 403 and "set-cookie" not in answer.headers
        assert answer.json()["error"]["kind"] == "forbidden" and "admin-token" in answer.json()["error"]["message"]
    forged = httpx.post(server.url + SWITCHES, json={}, cookies={"aistack_admin": "forged"})
    assert forged.status_code == 403
    assert httpx.get(server.url + "/dashboard/session", cookies={"aistack_admin": "forged"}).json()["admin"] is False


def test_another_site_cannot_act_even_with_the_cookie(server: ServerProcess) -> None:
    cookies = {"aistack_admin": server.admin_token}
    evil = {"Origin": "https://evil.example"}
    assert httpx.post(server.url + SWITCHES, json={}, cookies=cookies, headers=evil).status_code == 403
    assert httpx.get(server.url + "/admin/api/logs", cookies=cookies, headers=evil).status_code == 403  # nor read
    assert httpx.get(server.url + "/admin/api/logs", cookies=cookies).status_code == 200


def test_docs_load_their_files_from_this_server(server: ServerProcess) -> None:
    page = httpx.get(server.url + "/docs").text
    scripts = re.findall(r'(?:src|href)=["\']([^"\']+\.(?:js|css))', page)
    assert scripts and all(s.startswith("/docs/static/") for s in scripts), scripts
    assert "cdn" not in page.lower()
    for path in scripts:
        assert httpx.get(server.url + path).status_code == 200
    redoc = httpx.get(server.url + "/redoc").text
    assert "/docs/static/redoc.standalone.js" in redoc and "fonts.googleapis" not in redoc
