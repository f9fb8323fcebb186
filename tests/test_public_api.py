from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["cisora_mesh", "capability"])
def test_all_is_sorted_complete_and_importable(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    # isort-style order, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions.
    assert list(exported) == sorted(exported, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(module, name), name
    public = {n for n in vars(module) if not n.startswith("_") and not isinstance(getattr(module, n), type(module))}
    public -= {"annotations"}
    assert public == set(exported)
