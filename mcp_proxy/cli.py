"""`cisora-mesh proxy` and `cisora-mesh pins` (registered through the `cisora_mesh.commands` entry point)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Placeholder until the proxy lands: the group is not listed yet."""
    del subparsers
