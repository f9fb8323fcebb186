"""``cisora-mesh token``: keygen | issue | attenuate | inspect | verify.

The main CLI calls :func:`register` with its subparsers; each command stores its handler as ``handler``
(``args.handler(args)`` returns the exit code). Exit codes: 0 success, 1 a token that fails verification,
2 bad input or usage. Errors are one line on stderr, never a traceback. ``capability`` is imported lazily inside
the handlers so that ``cisora-mesh --help`` stays fast.

Keys are JSON Web Keys (OKP/Ed25519, RFC 8037): ``keygen`` writes the private JWK (mode 0600) and prints the public
one. Capabilities are given in their wire form, e.g.
``--cap '{"res":"mcp://files/tools/read_file","act":["call"],"args":{"/path":[{"op":"prefix","value":"/srv/"}]}}'``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from capability import Capability, PublicKey, SigningKey

__all__ = ["main", "register"]


class UsageError(Exception):
    """Bad input: reported in one line with exit code 2."""


def _one_line_error(prog: str) -> Callable[[str], NoReturn]:
    def error(message: str) -> NoReturn:
        sys.stderr.write(f"{prog}: error: {message}\n")
        raise SystemExit(2)

    return error


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        _one_line_error(self.prog)(message)


def _read_text(value: str) -> str:
    """``-`` reads stdin, ``@path`` reads a file, anything else is the literal value."""
    if value == "-":
        return sys.stdin.read().strip()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read {value[1:]}: {exc.strerror}") from None
    return value


def _load_json(value: str, what: str) -> Any:
    try:
        return json.loads(_read_text(value))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON ({exc.msg} at position {exc.pos})") from None


def _load_private(path: str) -> SigningKey:
    from capability import SigningKey

    jwk = _load_json(path if path.startswith("@") or path == "-" else "@" + path, "key file")
    if not isinstance(jwk, dict):
        raise UsageError("key file must hold a JWK object")
    return SigningKey.from_jwk(jwk)


def _load_public_keys(value: str) -> list[PublicKey]:
    """A base64url raw key, or a file (path or @path) holding a JWK, a JWKS or a private JWK."""
    from capability import PublicKey

    if value != "-" and not value.startswith("@") and not Path(value).exists():
        return [PublicKey.from_b64(value)]
    data = _load_json(value if value.startswith("@") or value == "-" else "@" + value, "key file")
    jwks = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
    if not isinstance(jwks, list) or not all(isinstance(k, dict) for k in jwks):
        raise UsageError("expected a JWK or a JWKS object")
    return [PublicKey.from_jwk(k) for k in jwks]


def _one_public(value: str) -> PublicKey:
    keys = _load_public_keys(value)
    if len(keys) != 1:
        raise UsageError("expected exactly one public key for --holder")
    return keys[0]


def _caps(values: Sequence[str] | None) -> list[Capability] | None:
    import msgspec

    from capability import Capability

    if not values:
        return None
    caps: list[Capability] = []
    for raw in values:
        try:
            caps.append(msgspec.convert(_load_json(raw, "--cap"), Capability))
        except msgspec.ValidationError as exc:
            raise UsageError(f"invalid --cap: {exc}") from None
    return caps


def _now(args: argparse.Namespace) -> int:
    return int(args.now) if args.now is not None else int(time.time())


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def cmd_keygen(args: argparse.Namespace) -> int:
    """Generate an Ed25519 key; write the private JWK, print the public JWK."""
    from capability import SigningKey

    key = SigningKey.generate()
    if args.out:
        try:
            fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot create {args.out}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(key.to_jwk(), fh, indent=2, sort_keys=True)
            fh.write("\n")
        _print(key.public.to_jwk())
    else:
        _print(key.to_jwk())
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    """Issue a root token."""
    from capability import issue

    caps = _caps(args.cap)
    if not caps:
        raise UsageError("issue needs at least one --cap")
    token = issue(
        _load_private(args.key),
        holder=_one_public(args.holder),
        audience=args.aud,
        capabilities=caps,
        now=_now(args),
        ttl=args.ttl,
        not_before=args.nbf,
        budget=args.budget,
    )
    sys.stdout.write(token + "\n")
    return 0


def cmd_attenuate(args: argparse.Namespace) -> int:
    """Append a narrower link, signed by the current holder."""
    from capability import attenuate

    token = attenuate(
        _read_text(args.token),
        _load_private(args.key),
        holder=_one_public(args.holder),
        now=_now(args),
        capabilities=_caps(args.cap),
        ttl=args.ttl,
        budget=args.budget,
    )
    sys.stdout.write(token + "\n")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Decode a chain WITHOUT verifying it."""
    import msgspec

    from capability import decode_chain
    from capability.tokens import DecodeError

    try:
        links = decode_chain(_read_text(args.token))
    except DecodeError:
        raise UsageError("token is malformed") from None
    _print(
        {
            "verified": False,
            "links": [
                {
                    "digest": link.digest,
                    "header": msgspec.to_builtins(link.header),
                    "claims": msgspec.to_builtins(link.claims),
                }
                for link in links
            ],
        }
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify a chain offline against trust anchors for one request."""
    import msgspec

    from capability import AuditEvent, InvalidCapability, KeySet, Verifier

    trust = KeySet()
    for value in args.trust:
        for key in _load_public_keys(value):
            trust.add(key)
    request_args = _load_json(args.args, "--args") if args.args is not None else {}
    reasons: list[AuditEvent] = []
    verifier = Verifier(trust, audience=args.aud, require_pop=args.pop is not None, audit=reasons.append)
    try:
        grant = verifier.verify(
            _read_text(args.token),
            resource=args.resource,
            action=args.action,
            args=request_args,
            now=_now(args),
            method=args.method,
            pop=_read_text(args.pop) if args.pop is not None else None,
            descriptor_digest=args.descriptor_digest,
        )
    except InvalidCapability:
        reason = reasons[-1].reason if reasons else "unknown"
        sys.stderr.write(f"cisora-mesh token verify: invalid capability ({reason})\n")
        return 1
    _print(msgspec.to_builtins(grant))
    return 0


def _run(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from capability import CapabilityError

        try:
            return handler(args)
        except (UsageError, CapabilityError, ValueError) as exc:
            sys.stderr.write(f"cisora-mesh token {args.token_command}: error: {exc}\n")
            return 2

    run.__doc__ = handler.__doc__
    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``token`` command group to the main CLI's subparsers."""
    token = subparsers.add_parser("token", help="capability tokens: keygen, issue, attenuate, inspect, verify")
    token.error = _one_line_error(token.prog)  # type: ignore[method-assign,assignment]
    sub = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND", parser_class=_Parser)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=_run(handler))
        return p

    p = add("keygen", cmd_keygen, "generate an Ed25519 key (private JWK to --out, public JWK to stdout)")
    p.add_argument("--out", help="file for the private JWK (created with mode 0600; refuses to overwrite)")

    time_help = "current Unix time in seconds (default: the system clock)"
    p = add("issue", cmd_issue, "issue a root token signed by a trust-anchor key")
    p.add_argument("--key", required=True, help="private JWK file of the issuer (trust anchor)")
    p.add_argument("--holder", required=True, help="holder public key: JWK file or base64url raw key")
    p.add_argument("--aud", required=True, help="audience (the verifier's identity)")
    p.add_argument("--cap", action="append", required=True, help="capability JSON (wire form), @file or -")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    p.add_argument("--nbf", type=int, default=None, help="not-before Unix time (default: now)")
    p.add_argument("--budget", type=int, default=None, help="maximum number of calls")
    p.add_argument("--now", type=int, default=None, help=time_help)

    p = add("attenuate", cmd_attenuate, "append a narrower link signed by the current holder")
    p.add_argument("--token", required=True, help="parent token, @file or -")
    p.add_argument("--key", required=True, help="private JWK file of the current holder")
    p.add_argument("--holder", required=True, help="new holder public key: JWK file or base64url raw key")
    p.add_argument("--cap", action="append", help="narrower capability JSON (default: inherit)")
    p.add_argument("--ttl", type=int, default=None, help="lifetime in seconds (capped by the parent)")
    p.add_argument("--budget", type=int, default=None, help="maximum number of calls (<= parent)")
    p.add_argument("--now", type=int, default=None, help=time_help)

    p = add("inspect", cmd_inspect, "decode a token without verifying it")
    p.add_argument("token", help="token, @file or -")

    p = add("verify", cmd_verify, "verify a token offline for one request (exit 1 when it does not verify)")
    p.add_argument("token", help="token, @file or -")
    p.add_argument("--trust", action="append", required=True, help="trust anchor: JWK/JWKS file or base64url key")
    p.add_argument("--aud", required=True, help="this verifier's audience")
    p.add_argument("--resource", required=True, help="e.g. mcp://files/tools/read_file")
    p.add_argument("--action", default="call", help="action (default: call)")
    p.add_argument("--args", default=None, help="call arguments as JSON, @file or -")
    p.add_argument("--pop", default=None, help="proof of possession (required by the verifier when given)")
    p.add_argument("--method", default=None, help="method named in the PoP (default: the action)")
    p.add_argument("--descriptor-digest", default=None, help="digest of the tool descriptor (for pinned tools)")
    p.add_argument("--now", type=int, default=None, help=time_help)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``token`` on its own (``python -m cisora_mesh.cli.token keygen ...``)."""
    parser: argparse.ArgumentParser = _Parser(prog="cisora-mesh")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["token", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
