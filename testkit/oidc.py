"""An OpenID Connect issuer for tests: a real RSA key pair, its JWKS served over HTTP on
loopback, tokens signed with PyJWT."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from testkit.stack import free_ports

ISSUER = "https://idp.example/realms/ml"
AUDIENCE = "ml-service"


class Issuer:
    """An identity provider's signing key and its JWKS at a loopback URL."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "key-1"
        self.fetches = 0
        self.down = False
        issuer = self

        class Jwks(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                issuer.fetches += 1
                if issuer.down:
                    self.send_error(503)
                    return
                public = jwt.algorithms.RSAAlgorithm.to_jwk(issuer.key.public_key(), as_dict=True)
                body = json.dumps({"keys": [{**public, "kid": issuer.kid, "use": "sig"}]})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_ports(1)[0]), Jwks)
        self.url = f"http://127.0.0.1:{self.server.server_port}/protocol/openid-connect/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, key: Any = None, kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        headers = {"kid": kid or self.kid}
        return jwt.encode(body, key or self.key, algorithm="RS256", headers=headers)

    def settings(self, **extra: Any) -> dict[str, Any]:
        """The service's `auth.oidc` settings for this issuer."""
        return {"issuer": ISSUER, "jwks_url": self.url, "audience": AUDIENCE, **extra}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
