"""`python -m cisora_mesh` runs the `cisora-mesh` command."""

from __future__ import annotations

import sys

from cisora_mesh.cli import main

sys.exit(main())
