"""The API's contract, checked against a running service from its own OpenAPI document:
the authorization matrix (every operation x every kind of caller) and a schemathesis
fuzz (server errors, declared statuses, content types, response schemas)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.core.access import Principal, Role

API = "/api/v1/ml"
ROLE_KEY = "x-required-role"
METHODS = ("get", "put", "post", "patch", "delete")
# Callers holding no valid credential: each must be a 401.
REFUSED = ("anonymous", "expired", "revoked", "wrong_issuer")


@dataclass(frozen=True)
class Operation:
    """One route: its method and concrete path, the role it needs (None: public) and the
    statuses it documents (None: not described by an OpenAPI document)."""

    method: str
    path: str
    role: Role | None
    documented: frozenset[str] | None
    body: Any = None


@dataclass(frozen=True)
class Mismatch:
    operation: Operation
    caller: str
    status: int
    expected: str


def operations(spec: Mapping[str, Any]) -> Iterator[Operation]:
    """Every operation of an OpenAPI document, its path parameters filled with values that
    fit their schema but name nothing that exists, and `{}` as the body of those with one."""
    for template, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            declared = [*item.get("parameters", []), *op.get("parameters", [])]
            params = {p["name"]: p for p in declared if p.get("in") == "path"}
            path = template
            for name, param in params.items():
                path = path.replace("{" + name + "}", _placeholder(param))
            role = op.get(ROLE_KEY)
            yield Operation(
                method.upper(),
                path,
                Role(role) if role else None,
                frozenset(op.get("responses", {})),
                {} if "requestBody" in op else None,
            )


def _placeholder(param: Mapping[str, Any]) -> str:
    schema = param.get("schema", {})
    if schema.get("type") == "integer":
        return "987654"
    pattern = schema.get("pattern")
    for candidate in ("matrix-nothing", "tok_matrix0", "abc123", "x"):
        if pattern is None or re.search(pattern, candidate):
            return candidate
    raise ValueError(f"no placeholder fits {param['name']}'s pattern {pattern!r}")


def expectation(operation: Operation, caller: str, roles: Mapping[str, Role]) -> str:
    """What `caller` must get: `401`, `403`, or `through` (past the guard: not 401/403,
    and a status the operation documents)."""
    if operation.role is None:
        return "through"
    if caller in REFUSED:
        return "401"
    held = Principal(caller, frozenset({roles[caller]}))
    return "through" if held.can(operation.role) else "403"


def check(
    http: httpx.Client,
    ops: list[Operation],
    headers: Mapping[str, Mapping[str, str]],
    roles: Mapping[str, Role],
) -> tuple[int, list[Mismatch]]:
    """Call every operation as every caller; the number of calls and the mismatches."""
    mismatches: list[Mismatch] = []
    calls = 0
    for operation in ops:
        for caller, header in headers.items():
            kwargs: dict[str, Any] = {"headers": dict(header)}
            if operation.body is not None:
                kwargs["json"] = operation.body
            status = http.request(operation.method, operation.path, **kwargs).status_code
            calls += 1
            expected = expectation(operation, caller, roles)
            documented = operation.documented is None or str(status) in operation.documented
            if expected == "through":
                ok = status not in (401, 403) and status < 500 and documented
            else:
                ok = str(status) == expected and documented
            if not ok:
                mismatches.append(Mismatch(operation, caller, status, expected))
    return calls, mismatches


CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


@dataclass(frozen=True)
class FuzzResult:
    exit_code: int
    generated: int
    failures: int
    errored: int
    output: str


def fuzz(
    url: str,
    token: str,
    report_dir: Path,
    max_examples: int,
    seed: int = 20261202,
    phases: str = "examples,fuzzing",
    known: Mapping[str, list[str | int]] | None = None,
) -> FuzzResult:
    """Run schemathesis's CLI over every operation of the service at `url` as `token`'s
    holder, positive and negative cases, with the four checks; its counts and output.
    `known`: values of path parameters that name existing objects (e.g. `model_id`), used
    for half of the cases so that operations reach them, not only their 404s."""
    report = report_dir / "schemathesis.json"
    config = report_dir / "schemathesis.toml"
    lines: list[str] = []
    for name, values in (known or {}).items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    lines += [
        f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}' for name in known or {}
    ]
    config.write_text("\n".join(lines) + "\n")
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--mode",
        "all",
        "--phases",
        phases,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--generation-database",
        "none",
        "--no-shrink",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "60",
        # One worker thread: CPython 3.11.7's AST constructor keeps its recursion depth in
        # shared state (python/cpython#106905), and hypothesis parses lambdas' sources
        # while it validates schemathesis's strategies; two threads at it ended one run
        # in "SystemError: AST constructor recursion depth mismatch".
        "--workers",
        "1",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    done = subprocess.run(  # in `report_dir`: its cache of findings stays there
        command, capture_output=True, text=True, timeout=1500, check=False, cwd=report_dir
    )
    cases = json.loads(report.read_text())["test_cases"] if report.exists() else {}
    return FuzzResult(
        done.returncode,
        int(cases.get("generated", 0)),
        int(cases.get("with_failures", 0)),
        int(cases.get("errored", 0)),
        done.stdout + done.stderr,
    )


@contextlib.contextmanager
def jobs_cancelled(url: str, token: str, every_s: float = 1.0) -> Iterator[list[str]]:
    """While inside, cancel every job the service runs (the fuzz submits real ones: on two
    cores they would starve the rest, and a `follow=true` log streams until its job ends);
    yields the ids cancelled."""
    cancelled: list[str] = []
    done = threading.Event()

    def cancel_all() -> None:
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, timeout=30, headers=auth) as http:
            while not done.wait(every_s):
                with contextlib.suppress(httpx.HTTPError):
                    for job in http.get(f"{API}/training").json():
                        if job["state"] in ("pending", "running"):
                            http.post(f"{API}/training/{job['job_id']}/cancel")
                            if job["job_id"] not in cancelled:
                                cancelled.append(job["job_id"])

    worker = threading.Thread(target=cancel_all, name="cancel-jobs", daemon=True)
    worker.start()
    try:
        yield cancelled
    finally:
        done.set()
        worker.join(timeout=60)
