"""`cisora-mesh proxy stdio|http` and `cisora-mesh pins list|approve|revoke`.

Registered through the `cisora_mesh.commands` entry point. Registration stays cheap: the proxy, the audit store
and the MCP SDK are imported inside the handlers, so `cisora-mesh --help` does not pay for them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cisora_mesh.cli._common import CliError, add_common_options, open_audit


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proxy = subparsers.add_parser("proxy", help="front MCP servers: inspect, pin and audit every message")
    proxy_sub = proxy.add_subparsers(dest="proxy_command", metavar="<transport>", required=True)

    stdio = proxy_sub.add_parser(
        "stdio",
        help="serve MCP on stdin/stdout and spawn the upstream server",
        description="Serve MCP on stdin/stdout, forwarding to the stdio MCP server started by CMD.",
        usage="cisora-mesh proxy stdio [options] -- CMD [ARGS...]",
    )
    _proxy_options(stdio)
    stdio.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]", help="the MCP server to run")
    stdio.set_defaults(handler=_run_stdio)

    http = proxy_sub.add_parser(
        "http",
        help="serve MCP over streamable HTTP at /mcp",
        description="Serve streamable HTTP at /mcp, forwarding to --upstream URL or the stdio server started by CMD.",
        usage="cisora-mesh proxy http --host H --port P (--upstream URL | -- CMD [ARGS...]) [options]",
    )
    http.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    http.add_argument("--port", type=int, default=8765, help="port to bind (default: %(default)s)")
    http.add_argument("--upstream", metavar="URL", help="streamable-HTTP MCP server to forward to")
    _proxy_options(http)
    http.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]", help="a stdio MCP server to run")
    http.set_defaults(handler=_run_http)

    pins = subparsers.add_parser("pins", help="list, approve and revoke MCP tool pins (rug-pull protection)")
    pins_sub = pins.add_subparsers(dest="pins_command", metavar="<action>", required=True)
    listing = pins_sub.add_parser("list", help="show pinned tools and their state")
    listing.add_argument("--server", help="only this server")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add_common_options(listing)
    listing.set_defaults(handler=_pins_list)
    for action, text in (("approve", "trust the tool's current definition"), ("revoke", "hide and deny the tool")):
        p = pins_sub.add_parser(action, help=text)
        p.add_argument("server")
        p.add_argument("tool")
        add_common_options(p)
        p.set_defaults(handler=_pins_change, pins_action=action)


def _proxy_options(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument("--name", help="server name used for pins and audit (default: derived from CMD)")
    parser.add_argument("--store", metavar="URL", help="audit store URL (default: SQLite in the data directory)")
    parser.add_argument("--no-audit", action="store_true", help="do not record decisions (testing only)")
    parser.add_argument("--no-inspect", action="store_true", help="forward without inspection (benchmarks)")
    parser.add_argument("--pinning", choices=["tofu", "approve", "off"], help="override the configured pinning mode")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")


def _command(args: argparse.Namespace) -> list[str]:
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    return command


def _setup(args: argparse.Namespace) -> tuple[Any, Path, str]:
    import logging

    from mcp_proxy import app, config
    from mcp_proxy.errors import ProxyError

    app.configure_logging(logging.INFO if args.verbose else logging.WARNING)
    try:
        mesh_config, settings = config.load(args.config)
    except ProxyError as exc:
        raise CliError(str(exc)) from None
    updates: dict[str, Any] = {}
    if args.no_inspect:
        updates["inspect"] = False
    if args.pinning:
        updates["pinning"] = args.pinning
    if updates:
        settings = settings.model_copy(update=updates)
    data_dir = Path(args.data_dir or mesh_config.data_dir or _default_data_dir()).expanduser()
    tenant = args.tenant if args.tenant != "default" else settings.tenant
    audit = None if (args.no_audit or not settings.inspect) else open_audit(mesh_config, data_dir, args.store)
    runtime = app.build_runtime(mesh_config, settings, data_dir, tenant=tenant, audit=audit)
    return runtime, data_dir, tenant


def _default_data_dir() -> Path:
    from cisora_mesh.config import default_data_dir

    return default_data_dir()


def _run_stdio(args: argparse.Namespace) -> int:
    import anyio

    from mcp_proxy import app
    from mcp_proxy.config import server_name_for
    from mcp_proxy.errors import ProxyError

    command = _command(args)
    runtime, _, _ = _setup(args)
    try:
        if not command and not runtime.settings.servers:
            raise CliError("give the MCP server to run after '--', e.g. proxy stdio -- python server.py")
        try:
            if command:
                name = args.name or server_name_for(command)
                anyio.run(lambda: app.serve_stdio(runtime, command, server=name), backend="asyncio")
            else:
                anyio.run(lambda: app.serve_stdio_multi(runtime), backend="asyncio")
        except ProxyError as exc:
            raise CliError(str(exc)) from None
    finally:
        runtime.close()
    return 0


def _run_http(args: argparse.Namespace) -> int:
    from mcp_proxy.errors import ProxyError

    command = _command(args)
    if args.upstream and command:
        raise CliError("give either --upstream URL or -- CMD, not both")
    runtime, _, _ = _setup(args)
    try:
        from mcp_proxy.listeners.streamable_http import serve_http

        serve_http(runtime, host=args.host, port=args.port, upstream_url=args.upstream, command=command, name=args.name)
    except ProxyError as exc:
        raise CliError(str(exc)) from None
    finally:
        runtime.close()
    return 0


def _pin_store(args: argparse.Namespace) -> tuple[Any, str]:
    from mcp_proxy import config
    from mcp_proxy.errors import ProxyError
    from mcp_proxy.pinning import PinStore

    try:
        mesh_config, settings = config.load(args.config)
        data_dir = Path(args.data_dir or mesh_config.data_dir or _default_data_dir()).expanduser()
        tenant = args.tenant if args.tenant != "default" else settings.tenant
        return PinStore.in_data_dir(data_dir), tenant
    except ProxyError as exc:
        raise CliError(str(exc)) from None


def _pins_list(args: argparse.Namespace) -> int:
    import msgspec

    store, tenant = _pin_store(args)
    try:
        pins = store.list_pins(tenant, args.server)
    finally:
        store.close()
    out = sys.stdout
    if args.json:
        for pin in pins:
            out.write(msgspec.json.encode(pin.as_dict()).decode() + "\n")
        return 0
    if not pins:
        out.write(f"no pins for tenant {tenant!r}\n")
        return 0
    out.write(f"{'SERVER':<24} {'TOOL':<32} {'STATUS':<9} {'DIGEST':<14} NOTE\n")
    for pin in pins:
        out.write(f"{pin.server:<24} {pin.tool:<32} {pin.status:<9} {pin.seen_digest[:12]:<14} {pin.note}\n")
    return 0


def _pins_change(args: argparse.Namespace) -> int:
    store, tenant = _pin_store(args)
    try:
        if args.pins_action == "approve":
            pin = store.approve(tenant, args.server, args.tool)
        else:
            pin = store.revoke(tenant, args.server, args.tool)
    finally:
        store.close()
    if pin is None:
        raise CliError(f"no pin for tool {args.tool!r} of server {args.server!r} (tenant {tenant!r})", exit_code=1)
    sys.stdout.write(f"{args.pins_action}d {pin.server} {pin.tool} ({pin.status}, {pin.seen_digest[:12]})\n")
    return 0
