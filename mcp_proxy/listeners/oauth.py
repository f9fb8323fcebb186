"""OAuth 2.1 resource-server checks for the HTTP front (MCP authorization spec, RFC 9728, RFC 6750).

- No or unusable token -> 401 with `WWW-Authenticate: Bearer ... resource_metadata="<url>"` so the client can
  discover the authorization server; a valid token without the required scopes -> 403 `insufficient_scope`.
- Tokens are JWTs verified offline against a JWKS file with algorithms pinned by configuration (never `none`, never
  a symmetric algorithm): signature, `iss`, `aud` (this server's canonical URL, so a token minted for another
  resource cannot be replayed here), `exp`/`nbf`.
- The token is never forwarded: upstream connections are the proxy's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import msgspec

from mcp_proxy.config import OAuthSettings
from mcp_proxy.errors import ProxyConfigError


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    client_id: str | None
    scopes: frozenset[str]


class AuthFailure(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def metadata_path(resource: str) -> str:
    """RFC 9728 section 3.1: the well-known segment goes between the host and the resource's path."""
    path = urlsplit(resource).path.rstrip("/")
    return "/.well-known/oauth-protected-resource" + path


class JwtVerifier:
    def __init__(self, settings: OAuthSettings) -> None:
        self.settings = settings
        try:
            keyset = jwt.PyJWKSet.from_json(settings.jwks_file.read_text(encoding="utf-8"))
        except (OSError, jwt.PyJWKSetError, jwt.InvalidKeyError, ValueError) as exc:
            raise ProxyConfigError(f"cannot load JWKS file {settings.jwks_file}: {type(exc).__name__}") from None
        self.keys = list(keyset.keys)
        if not self.keys:
            raise ProxyConfigError(f"JWKS file {settings.jwks_file} holds no usable keys")
        parts = urlsplit(settings.resource)
        origin = f"{parts.scheme}://{parts.netloc}"
        self.metadata_url = origin + metadata_path(settings.resource)

    def metadata(self) -> dict[str, Any]:
        return {
            "resource": self.settings.resource,
            "authorization_servers": [self.settings.issuer],
            "scopes_supported": list(self.settings.required_scopes),
            "bearer_methods_supported": ["header"],
            "resource_signing_alg_values_supported": list(self.settings.algorithms),
        }

    def www_authenticate(self, failure: AuthFailure | None) -> str:
        parts = []
        if failure is not None and failure.error:
            parts.append(f'error="{failure.error}"')
            parts.append(f'error_description="{failure.description}"')
        if failure is not None and failure.error == "insufficient_scope":
            parts.append(f'scope="{" ".join(self.settings.required_scopes)}"')
        parts.append(f'resource_metadata="{self.metadata_url}"')
        return "Bearer " + ", ".join(parts)

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthFailure(401, "", "no access token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailure(401, "invalid_request", "use the Bearer scheme")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthFailure(401, "invalid_token", "malformed token") from None
        key = self._key(header)
        try:
            # Algorithms pinned by configuration; issuer and audience required (see the module docstring).
            claims: dict[str, Any] = jwt.decode(  # noqa: TID251
                token,
                key=key.key,
                algorithms=list(self.settings.algorithms),
                audience=self.settings.resource,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud"], "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure(401, "invalid_token", "token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthFailure(401, "invalid_token", "token audience is not this resource") from None
        except jwt.InvalidTokenError:
            raise AuthFailure(401, "invalid_token", "token rejected") from None
        scopes = _scopes(claims)
        missing = set(self.settings.required_scopes) - scopes
        if missing:
            raise AuthFailure(403, "insufficient_scope", "token lacks required scopes")
        client = claims.get("client_id") or claims.get("azp")
        return Principal(str(claims.get("sub", "")), str(client) if client else None, frozenset(scopes))

    def _key(self, header: dict[str, Any]) -> jwt.PyJWK:
        kid = header.get("kid")
        if kid is not None:
            for key in self.keys:
                if key.key_id == kid:
                    return key
            raise AuthFailure(401, "invalid_token", "unknown signing key")
        if len(self.keys) == 1:
            return self.keys[0]
        raise AuthFailure(401, "invalid_token", "token names no key id")


def _scopes(claims: dict[str, Any]) -> set[str]:
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list):
        return {str(v) for v in value}
    return set()


def encode_metadata(verifier: JwtVerifier) -> bytes:
    return msgspec.json.encode(verifier.metadata())
