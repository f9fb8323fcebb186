"""The `cisora-mesh` command.

Each subcommand group lives in its own module with a `register(subparsers)` function. Heavy imports (the audit
store, model code) happen inside the handlers, so `cisora-mesh --help` and the inline scan path start fast.
Packages that sit above the core (`mcp_proxy`, `memory_guard`) add their groups through the entry-point group
`cisora_mesh.commands`, so the core never imports them (the dependency arrows stay one-way).

Exit codes: 0 success; 1 the job ran but found a problem it reports (an audit log that does not verify, input lines
that could not be read); 2 usage or input errors (bad flags, missing files, invalid config), always one line on
stderr and never a traceback; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from cisora_mesh.cli._common import CliError, error_line

# Subcommand groups, in the order `--help` lists them. Each module exposes `register(subparsers)`.
_GROUPS = (
    "cisora_mesh.cli.scan",
    "cisora_mesh.cli.demo",
    "cisora_mesh.cli.init",
    "cisora_mesh.cli.eval",
    "cisora_mesh.cli.refdocs",
    "cisora_mesh.cli.audit",
    "cisora_mesh.cli.token",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cisora-mesh",
        description=(
            "Security layer for AI agents: scan prompts, tool traffic and documents for injection and data leaks, "
            "and keep a verifiable audit log of every decision."
        ),
        epilog="Run 'cisora-mesh <command> --help' for a command's options. Start with 'cisora-mesh demo'.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in _GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a group's own dependency is missing: that is a real error
                raise
            continue
        module.register(subparsers)
    for entry_point in sorted(entry_points(group="cisora_mesh.commands"), key=lambda ep: ep.name):
        entry_point.load()(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except CliError as exc:
        error_line(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`); nothing more to say.
        sys.stderr.close()
        return 1


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cisora-mesh")
    except PackageNotFoundError:
        return "0+unknown"


if __name__ == "__main__":
    sys.exit(main())
