"""Tokens from the command line.

    python -m app.tokens create --name alice --role engineer [--expires-in-days 30]
    python -m app.tokens list [--all]
    python -m app.tokens revoke tok_...
    python -m app.tokens me
    python -m app.tokens mint --name alice --role engineer     # offline, for the settings

`create`, `list`, `revoke` and `me` call the running service's API (`/auth/...`) with an
admin's token: `--url` (default `$ML_URL`, else http://127.0.0.1:8000) and the token in
`$ML_TOKEN` or `--token-file` (default `data/admin.token`, the bootstrap admin token).
`create` prints the new secret once; the service keeps only its SHA-256.

`mint` makes a token without a service: it prints the token once and the settings entry
that holds only its SHA-256, for `configs/<env>.yaml` or the `ML_AUTH__TOKENS` variable
(`python -m app.tokens --name ... --role ...`, without a command, is `mint`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from app.core.access import Role, mint_token, token_digest

API = "/api/v1/ml"
_COMMANDS = ("create", "list", "revoke", "me", "mint")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["mint", *argv]  # the command's first form
    args = _parser().parse_args(argv)
    if args.command == "mint":
        return _mint(args)
    try:
        return _call(args)
    except httpx.HTTPError as error:
        sys.stderr.write(f"cannot reach {args.url}: {error}\n")
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.tokens",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("create", "create a token (admin)"),
        ("list", "list tokens (admin)"),
        ("revoke", "revoke a token (admin)"),
        ("me", "who the service takes the token to be"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--url", default=os.environ.get("ML_URL", "http://127.0.0.1:8000"))
        sub.add_argument(
            "--token-file",
            type=Path,
            default=Path("data/admin.token"),
            help="the caller's token, unless $ML_TOKEN is set",
        )
        if name == "create":
            _name_and_roles(sub)
            sub.add_argument(
                "--expires-in-days",
                type=int,
                default=90,
                help="lifetime in days (default 90; 0: never expires)",
            )
        elif name == "list":
            sub.add_argument("--all", action="store_true", help="revoked tokens too")
        elif name == "revoke":
            sub.add_argument("token_id", help="the token's id (tok_...)")
    _name_and_roles(commands.add_parser("mint", help="make a token for the settings, offline"))
    return parser


def _name_and_roles(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="who holds the token (audit name)")
    parser.add_argument(
        "--role",
        action="append",
        choices=[r.value for r in Role],
        required=True,
        help="a role to grant (repeatable)",
    )


def _mint(args: argparse.Namespace) -> int:
    token = mint_token()
    entry = {"name": args.name, "roles": args.role, "sha256": token_digest(token)}
    out = sys.stdout
    out.write(f"token (shown once, give it to {args.name}):\n  {token}\n\n")
    out.write("configs/<env>.yaml:\n  auth:\n    tokens:\n")
    out.write(f"      - name: {entry['name']}\n        roles: [{', '.join(args.role)}]\n")
    out.write(f"        sha256: {entry['sha256']}\n\n")
    out.write(f"or the environment:\n  ML_AUTH__TOKENS='{json.dumps([entry])}'\n")
    return 0


def _call(args: argparse.Namespace) -> int:
    secret = os.environ.get("ML_TOKEN") or _read(args.token_file)
    if not secret:
        sys.stderr.write(f"no token: set ML_TOKEN or pass --token-file (not {args.token_file})\n")
        return 2
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=args.url.rstrip("/") + API, headers=headers, timeout=30) as http:
        if args.command == "create":
            lifetime = args.expires_in_days or None
            body = {"name": args.name, "roles": args.role, "expires_in_days": lifetime}
            response = http.post("/auth/tokens", json=body)
        elif args.command == "list":
            return _list(http, include_revoked=args.all)
        elif args.command == "revoke":
            response = http.delete(f"/auth/tokens/{args.token_id}")
        else:
            response = http.get("/auth/me")
    if response.status_code >= 400:
        return _failed(response)
    answer = response.json()
    if args.command == "create":
        sys.stdout.write(
            f"token {answer['id']} for {answer['name']} ({', '.join(answer['roles'])}), "
            f"expires {answer['expires_at'] or 'never'}\n"
            f"secret (shown once, give it to {answer['name']}):\n  {answer['token']}\n"
        )
    else:
        sys.stdout.write(json.dumps(answer, indent=2) + "\n")
    return 0


def _list(http: httpx.Client, *, include_revoked: bool) -> int:
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"include_revoked": include_revoked, "page_size": 500}
    while True:
        response = http.get("/auth/tokens", params=params)
        if response.status_code >= 400:
            return _failed(response)
        page = response.json()
        rows.extend(page["items"])
        if not page.get("next_page_token"):
            break
        params["page_token"] = page["next_page_token"]
    columns = ("id", "name", "roles", "state", "created_at", "last_used_at", "expires_at")
    sys.stdout.write("\t".join(columns) + "\n")
    for row in rows:
        cells = [",".join(row[c]) if c == "roles" else str(row[c] or "-") for c in columns]
        sys.stdout.write("\t".join(cells) + "\n")
    return 0


def _failed(response: httpx.Response) -> int:
    try:
        problem = response.json()
        text = f"{problem.get('code')}: {problem.get('detail')}"
    except ValueError:
        text = response.text[:300]
    sys.stderr.write(f"HTTP {response.status_code} {text}\n")
    return 1


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


if __name__ == "__main__":
    raise SystemExit(main())
