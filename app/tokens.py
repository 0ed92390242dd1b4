"""Mint a bearer token: `python -m app.tokens --name alice --role engineer`.

Prints the token once (give it to its holder) and the settings entry that holds only
its SHA-256, for `configs/<env>.yaml` or the `ML_AUTH__TOKENS` variable.
"""

from __future__ import annotations

import argparse
import json
import sys

from app.core.access import Role, mint_token, token_digest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m app.tokens", description=__doc__)
    parser.add_argument("--name", required=True, help="who holds the token (audit name)")
    parser.add_argument(
        "--role",
        action="append",
        choices=[r.value for r in Role],
        required=True,
        help="a role to grant (repeatable)",
    )
    args = parser.parse_args(argv)
    token = mint_token()
    entry = {"name": args.name, "roles": args.role, "sha256": token_digest(token)}
    out = sys.stdout
    out.write(f"token (shown once, give it to {args.name}):\n  {token}\n\n")
    out.write("configs/<env>.yaml:\n  auth:\n    tokens:\n")
    out.write(f"      - name: {entry['name']}\n        roles: [{', '.join(args.role)}]\n")
    out.write(f"        sha256: {entry['sha256']}\n\n")
    out.write(f"or the environment:\n  ML_AUTH__TOKENS='{json.dumps([entry])}'\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
