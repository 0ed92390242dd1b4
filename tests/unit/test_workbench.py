"""The workbench's files are served at /workbench/ next to the API, with a policy that keeps
every request on the service's origin; an unbuilt workbench is a 404 problem saying how to
build it. (The page itself is tested in a real browser: tests/e2e/test_workbench.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from app.api.factory import create_api
from app.services.container import Services
from testkit.api import StubTracker
from testkit.auth import Tokens
from testkit.settings import settings_for

ROOT = Path(__file__).resolve().parents[2]


def client_for(tmp_path: Path, workbench: Path | None) -> TestClient:
    settings = settings_for(tmp_path, Tokens())
    app = create_api(
        Services(tracker=StubTracker()),
        api=settings.api,
        tokens=settings.auth.tokens,
        workbench_dir=workbench,
    )
    return TestClient(app)


def test_the_built_page_is_served_with_a_same_origin_policy(tmp_path: Path) -> None:
    built = tmp_path / "dist"
    (built / "assets").mkdir(parents=True)
    (built / "index.html").write_text("<!doctype html><title>ML Workbench</title>")
    (built / "assets" / "index-abc.js").write_text("console.log(1)")
    client = client_for(tmp_path, built)

    moved = client.get("/workbench", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["location"] == "/workbench/"
    page = client.get("/workbench/")
    assert page.status_code == 200 and "ML Workbench" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert page.headers["cache-control"] == "no-cache"
    script = client.get("/workbench/assets/index-abc.js")
    assert script.status_code == 200 and script.text == "console.log(1)"
    assert "default-src 'self'" in script.headers["content-security-policy"]
    missing = client.get("/workbench/assets/nothing.js")
    assert missing.status_code == 404
    assert "/workbench" not in str(client.get("/openapi.json").json()["paths"])


def test_an_unbuilt_workbench_says_how_to_build_it(tmp_path: Path) -> None:
    client = client_for(tmp_path, tmp_path / "not-built")
    response = client.get("/workbench/")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "run scripts/setup" in response.json()["detail"]
    assert client.get("/workbench/assets/x.js").status_code == 404


def test_no_workbench_routes_when_it_is_off(tmp_path: Path) -> None:
    client = client_for(tmp_path, None)
    response = client.get("/workbench/")
    assert response.status_code == 404 and response.json()["code"] == "route_not_found"


def test_the_pages_types_are_generated_from_this_openapi_document(tmp_path: Path) -> None:
    """workbench/src/api.ts is openapi-typescript's output for the API as it is: a changed
    API shows up here (and in the page's type-check), not in a user's browser."""
    generator = ROOT / "workbench" / "node_modules" / ".bin" / "openapi-typescript"
    assert generator.exists(), "scripts/setup installs the workbench's tools (npm ci)"
    document = tmp_path / "openapi.json"
    client = client_for(tmp_path, None)
    document.write_text(json.dumps(client.get("/openapi.json").json(), indent=1))
    generated = tmp_path / "api.ts"
    subprocess.run(
        [str(generator), str(document), "-o", str(generated)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    committed = ROOT / "workbench" / "src" / "api.ts"
    assert generated.read_text() == committed.read_text(), (
        "the API changed: write its document to build/openapi.json "
        "(curl http://127.0.0.1:8000/openapi.json) and run `npm run types` in workbench/"
    )
