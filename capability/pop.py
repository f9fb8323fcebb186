"""Proof of possession (PoP): the holder signs each invocation (in the spirit of DPoP, RFC 9449).

A PoP is a compact JWS (``typ: cisora-pop+jws``, ``alg: EdDSA``, no ``kid``: the key is the chain's last holder)
over::

    {"ad": <args digest>, "aud": <audience>, "htm": <method>, "iat": <unix seconds>, "jti": <nonce>,
     "res": <resource>, "tok": <digest of the last link>}

``ad`` is ``sha256:`` + base64url(SHA-256(RFC 8785 canonical JSON of the arguments)). ``tok`` binds the proof to
one token, so a proof cannot be moved to another chain of the same holder.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, ClassVar, Final

import msgspec

from capability._b64 import b64e
from capability.jcs import canonicalize
from capability.keys import SigningKey
from capability.model import POP_TYP, Header
from capability.tokens import ALG, CHAIN_SEPARATOR, encode_jws, link_digest

__all__ = ["PopClaims", "args_digest", "descriptor_digest", "make_pop"]

MAX_POP_BYTES: Final = 2048


class PopClaims(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """PoP payload."""

    ad: str
    aud: str
    htm: str
    iat: int
    jti: str
    res: str
    tok: str

    __jcs_plain__: ClassVar[bool] = True  # only strings and a bounded int: msgspec output is JCS

    def __post_init__(self) -> None:
        if not 0 <= self.iat <= 2**53:
            raise ValueError("iat out of range")


def args_digest(args: Any) -> str:
    """``sha256:`` + base64url(SHA-256(JCS(args))). Raises CanonicalizationError for non-JSON values."""
    return "sha256:" + b64e(hashlib.sha256(canonicalize(args)).digest())


def descriptor_digest(descriptor: Any) -> str:
    """Digest of a tool descriptor (e.g. an MCP ``tools/list`` entry) for the ``pin`` of a capability."""
    return args_digest(descriptor)


def make_pop(
    holder_key: SigningKey,
    token: str,
    *,
    method: str,
    resource: str,
    args: Any,
    audience: str,
    now: int,
    nonce: str | None = None,
) -> str:
    """Create a PoP for one invocation of ``token`` by its holder."""
    last = token.rsplit(CHAIN_SEPARATOR, 1)[-1]
    claims = PopClaims(
        ad=args_digest(args if args is not None else {}),
        aud=audience,
        htm=method,
        iat=int(now),
        jti=nonce or b64e(secrets.token_bytes(16)),
        res=resource,
        tok=link_digest(last),
    )
    return encode_jws(Header(alg=ALG, typ=POP_TYP), claims, holder_key)
