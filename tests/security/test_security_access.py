"""Who may call aistack: fetch metadata, CORS for trusted origins, the API key and LAN mode (issue 9).

Attackers here are a web page in the user's browser (cross-site requests,
DNS rebinding) and a peer on the LAN when the server is bound to the network.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bench.harness import ServerProcess

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

Start = Callable[..., ServerProcess]
EDITOR = "https://editor.example"


def envelope(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert error["kind"] == kind and error["provider"] == "aistack"
    return str(error["message"])


def lan_data_dir(tmp_path: Path, **config: object) -> Path:
    """A data dir whose config binds the server to every address (the tests still reach it on loopback)."""
    data = tmp_path / "lan"
    data.mkdir(exist_ok=True)
    (data / "config.json").write_text(json.dumps({"host": "0.0.0.0", **config}))
    return data


# Browsers ------------------------------------------------------------------------------------------
def test_cross_site_fetch_without_origin_is_refused(start_server: Start) -> None:
    server = start_server()
    with httpx.Client(base_url=server.url) as client:
        message = envelope(client.get("/v1/models", headers={"Sec-Fetch-Site": "cross-site"}), 403, "forbidden")
        assert "cross-site" in message
        assert client.post("/v1/audio/speech", headers={"Sec-Fetch-Site": "cross-site"}, json={}).status_code == 403
        for value in ("same-origin", "same-site", "none"):
            assert client.get("/v1/models", headers={"Sec-Fetch-Site": value}).status_code == 200, value


def test_allowed_origins_get_cors_headers_and_preflight(start_server: Start) -> None:
    server = start_server(AISTACK_ALLOWED_ORIGINS=f"{EDITOR}, https://other.example")
    with httpx.Client(base_url=server.url) as client:
        ok = client.get("/v1/models", headers={"Origin": EDITOR})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == EDITOR
        assert "x-request-id" in ok.headers["access-control-expose-headers"] and ok.headers["vary"] == "Origin"
        error = client.get("/v1/nope", headers={"Origin": EDITOR})  # errors are readable by the page too
        assert error.status_code == 404 and error.headers["access-control-allow-origin"] == EDITOR

        preflight = client.options("/v1/chat/completions", headers={
            "Origin": EDITOR, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization"})
        assert preflight.status_code == 204 and preflight.content == b""
        assert preflight.headers["access-control-allow-origin"] == EDITOR
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "content-type" in preflight.headers["access-control-allow-headers"]

        other = client.options("/v1/chat/completions", headers={
            "Origin": "https://third.example", "Access-Control-Request-Method": "POST"})
        envelope(other, 403, "forbidden")
        assert "access-control-allow-origin" not in other.headers
        local = client.get("/v1/models", headers={"Origin": "http://localhost:3000"})  # passes, but cannot read
        assert local.status_code == 200 and "access-control-allow-origin" not in local.headers


# The API key -----------------------------------------------------------------------------------------
def test_api_key_guards_every_v1_and_admin_route(start_server: Start) -> None:
    server = start_server(AISTACK_API_KEY="s3cret-key")
    key = {"Authorization": "Bearer s3cret-key"}
    token = server.admin_token
    with httpx.Client(base_url=server.url) as client:
        for path in ("/v1/models", "/v1/audio/voices", "/admin/api/models", "/admin/api/status"):
            assert "AISTACK_API_KEY" in envelope(client.get(path), 403, "forbidden"), path
            assert "wrong" in envelope(client.get(path, headers={"Authorization": "Bearer nope"}), 403, "forbidden")
            assert client.get(path, headers=key).status_code == 200, path
        assert envelope(client.post("/v1/chat/completions", json={}), 403, "forbidden")
        assert client.post("/v1/chat/completions", json={}, headers=key).status_code == 400  # past the key: validation
        assert client.get("/health").status_code == 200  # liveness stays open

        # Admin changes: the key alone is not enough; the token travels in X-Aistack-Admin-Token.
        unload = "/admin/api/models/whisper-tiny.en/unload"
        assert "admin-token" in envelope(client.post(unload, headers=key), 403, "forbidden")
        both = client.post(unload, headers={**key, "X-Aistack-Admin-Token": token})
        assert both.status_code != 403, both.text
        # The tray and dashboard hold the admin token, not the key: the token passes the key check too.
        assert client.get("/v1/models", headers={"X-Aistack-Admin-Token": token}).status_code == 200
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_api_key_lets_cors_preflight_through(start_server: Start) -> None:
    server = start_server(AISTACK_API_KEY="k", AISTACK_ALLOWED_ORIGINS=EDITOR)
    preflight = httpx.options(server.url + "/v1/models", headers={"Origin": EDITOR, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204
    assert "authorization" in preflight.headers["access-control-allow-headers"]


def test_admin_token_header_is_accepted(http: httpx.Client, server: ServerProcess) -> None:
    """X-Aistack-Admin-Token is documented next to Authorization: Bearer."""
    response = http.post("/admin/api/models/whisper-tiny.en/unload", headers={"X-Aistack-Admin-Token": server.admin_token})
    assert response.status_code == 200, response.text
    envelope(http.post("/admin/api/models/whisper-tiny.en/unload", headers={"X-Aistack-Admin-Token": "nope"}),
             403, "forbidden")


# LAN mode --------------------------------------------------------------------------------------------
def test_lan_bind_without_key_warns_in_log_and_status(start_server: Start, tmp_path: Path) -> None:
    server = start_server(data_dir=lan_data_dir(tmp_path))
    status = httpx.get(server.url + "/admin/api/status").json()
    assert any("AISTACK_API_KEY" in w and "0.0.0.0" in w for w in status["warnings"]), status["warnings"]
    assert "SECURITY WARNING" in server.log()


def test_lan_bind_with_key_has_no_warning(start_server: Start, tmp_path: Path) -> None:
    server = start_server(data_dir=lan_data_dir(tmp_path, api_key="k"))
    status = httpx.get(server.url + "/admin/api/status", headers={"Authorization": "Bearer k"}).json()
    assert status["warnings"] == []


def test_loopback_bind_has_no_warning(http: httpx.Client) -> None:
    assert http.get("/admin/api/status").json()["warnings"] == []


def test_lan_mode_accepts_only_this_machines_names(start_server: Start, tmp_path: Path) -> None:
    """DNS rebinding on the LAN: a Host that is not one of this server's names is refused."""
    server = start_server(data_dir=lan_data_dir(tmp_path, allowed_hosts=["aistack.lan"]))
    own = [socket.gethostname(), "aistack.lan:11500", "127.0.0.1", "localhost:11500"]
    with httpx.Client(base_url=server.url) as client:
        for host in own:
            assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "rebind.attacker.example:11500", "192.0.2.254"):
            assert "AISTACK_ALLOWED_HOSTS" in envelope(client.get("/v1/models", headers={"Host": host}), 403, "forbidden")


@pytest.mark.parametrize("host", ["evil.example", "192.168.1.10:11500"])
def test_loopback_mode_refuses_other_hosts(http: httpx.Client, host: str) -> None:
    assert "localhost" in envelope(http.get("/v1/models", headers={"Host": host}), 403, "forbidden")
