"""Build the benign corpus JSONL files from our hand-written text files and from installed docstrings.

    python bench/benign/build.py [--site-packages PATH]

- `prompts.txt` (one ordinary assistant request per line) -> `prompts.jsonl`, kind `prompt`.
- `docs.txt` (`kind<TAB>text`, `\\n` for newlines) -> `docs.jsonl`: documentation, tool results, tool descriptions.
- Docstrings of installed, permissively licensed packages -> `docstrings.jsonl`, kind `document`, with the
  package and file recorded in `source` (deterministic: sorted files, first docstrings per package).
Everything is label 0. Ids are stable for a given input, so the hashed train/validation split is reproducible.
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = ("anyio", "click", "httpx", "pydantic", "starlette", "rich", "pygments", "packaging", "h11", "uvicorn")
PER_PACKAGE = 30


def _write(path: Path, records: list[dict[str, object]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def written() -> None:
    prompts = [line.strip() for line in (HERE / "prompts.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    _write(
        HERE / "prompts.jsonl",
        [
            {
                "id": f"benign-own/prompt/{i}",
                "text": t,
                "kind": "prompt",
                "label": 0,
                "category": "benign_own",
                "source": "written",
            }
            for i, t in enumerate(prompts)
        ],
    )
    docs = []
    for i, line in enumerate((HERE / "docs.txt").read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        kind, text = line.split("\t", 1)
        # Tool descriptions are JSON and keep their escaped newlines; prose gets real ones.
        text = text if kind == "tool_description" else text.replace("\\n", "\n")
        docs.append(
            {
                "id": f"benign-own/doc/{i}",
                "text": text,
                "kind": kind,
                "label": 0,
                "category": "benign_own",
                "source": "written",
            }
        )
    _write(HERE / "docs.jsonl", docs)


def docstrings(site_packages: Path) -> None:
    records: list[dict[str, object]] = []
    for package in PACKAGES:
        taken = 0
        for path in sorted((site_packages / package).rglob("*.py")):
            if taken >= PER_PACKAGE:
                break
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError):
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                doc = ast.get_docstring(node)
                if doc is None or not 200 <= len(doc) <= 4000:
                    continue
                rel = path.relative_to(site_packages).as_posix()
                records.append(
                    {
                        "id": f"benign-doc/{rel}:{getattr(node, 'lineno', 0)}",
                        "text": doc,
                        "kind": "document",
                        "label": 0,
                        "category": "benign_docstring",
                        "source": f"site-packages/{rel}",
                    }
                )
                taken += 1
                if taken >= PER_PACKAGE:
                    break
    _write(HERE / "docstrings.jsonl", records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--site-packages", type=Path, default=Path("/work/venv/lib/python3.11/site-packages"))
    args = parser.parse_args()
    written()
    if args.site_packages.is_dir():
        docstrings(args.site_packages)


if __name__ == "__main__":
    main()
