"""Build the additional benign corpus for the ML classifier (all label 0).

    python bench/benign_ml/build.py [--site-packages PATH] [--doc-root /usr/share/doc]

- `prompts.txt` -> `prompts.jsonl` (kind prompt): ordinary requests written by us, most with trigger words used
  innocently (over-defence probes in the spirit of InjecGuard's NotInject set, written from scratch).
- `tools.txt` -> `tools.jsonl` (kind tool_description): realistic MCP tool definitions written by us, many with the
  imperative, cautionary wording real tools use ("IMPORTANT: always use absolute paths", "call X first").
- `tool_results.txt` -> `tool_results.jsonl` (kind tool_result): e-mails, logs, search results, pages (`\\n` = newline).
- `pytools.jsonl` (kind tool_description): tool definitions derived from public functions of installed packages:
  name = function name, description = the docstring's first paragraph, one schema property per parameter with the
  parameter's line from the docstring when there is one. These are real developer-written API descriptions in the
  shape of MCP tools, from packages NOT used by bench/benign/docstrings.jsonl.
- `debdocs.jsonl` (kinds document / tool_result alternating): paragraphs of README files under /usr/share/doc.
- `short.txt` (`kind<TAB>text`) -> `short.jsonl`: greetings, one-word replies and terse tool results, plus minimal
  tool definitions generated from a list of names (name only, empty schema, one-word description). Without them
  the head had never seen a very short benign text and scored "hi" at 0.99.
- `attacks_written.txt`, `poison_written.txt` -> `attacks.jsonl` (LABEL 1, the contrast set): injections and
  tool-poisoning instructions we wrote ourselves in varied wording (direct overrides, prompt extraction, persona
  jailbreak openers, instructions addressed to an agent inside content, exfiltration, other languages). The dev
  positives come from a few upstream payload lists; without these the head learns those lists' phrasing. Each
  attack is used as a prompt and inserted into one of our benign tool results; each poisoning sentence is inserted
  into two of our benign tool definitions (a written one and a derived one) at the description end, a property
  description or the description start.
Deterministic (sorted files, fixed caps); ids are stable, so the hashed split is reproducible.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY_PACKAGES = (
    "jinja2",
    "jsonschema",
    "networkx",
    "fsspec",
    "huggingface_hub",
    "psycopg",
    "redis",
    "markdown_it",
    "sympy",
    "filelock",
    "referencing",
    "attr",
    "mcp",
    "hypothesis",
)
PER_PACKAGE = 25
MAX_DEBDOCS = 240


def _write(name: str, records: list[dict[str, object]]) -> None:
    with (HERE / name).open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def _record(rid: str, text: str, kind: str, source: str) -> dict[str, object]:
    return {"id": rid, "text": text, "kind": kind, "label": 0, "category": "benign_ml", "source": source}


def written() -> None:
    lines = [x.strip() for x in (HERE / "prompts.txt").read_text(encoding="utf-8").split("\n") if x.strip()]
    _write("prompts.jsonl", [_record(f"benign-ml/prompt/{i}", t, "prompt", "written") for i, t in enumerate(lines)])
    tools = [x.strip() for x in (HERE / "tools.txt").read_text(encoding="utf-8").split("\n") if x.strip()]
    for t in tools:
        json.loads(t)  # every line must be a valid tool definition
    _write(
        "tools.jsonl", [_record(f"benign-ml/tool/{i}", t, "tool_description", "written") for i, t in enumerate(tools)]
    )
    results = [x.strip() for x in (HERE / "tool_results.txt").read_text(encoding="utf-8").split("\n") if x.strip()]
    _write(
        "tool_results.jsonl",
        [
            _record(f"benign-ml/result/{i}", t.replace("\\n", "\n"), "tool_result", "written")
            for i, t in enumerate(results)
        ],
    )


_PARAM_LINE = re.compile(r"^\s*(?::param\s+)?\*{0,2}(\w+)\*{0,2}\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def _param_docs(doc: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in doc.splitlines():
        m = _PARAM_LINE.match(line)
        if m and len(m.group(2)) > 8:
            out.setdefault(m.group(1), m.group(2).strip())
    return out


def _json_type(annotation: ast.expr | None) -> str:
    name = ast.unparse(annotation) if annotation is not None else ""
    for py, js in (("bool", "boolean"), ("int", "integer"), ("float", "number"), ("list", "array"), ("dict", "object")):
        if name.startswith(py) or name.startswith(f"t.{py}") or name.lower().startswith(py):
            return js
    return "string"


def pytools(site_packages: Path) -> None:
    records: list[dict[str, object]] = []
    for package in PY_PACKAGES:
        root = site_packages / package
        if not root.is_dir():
            continue
        taken = 0
        for path in sorted(root.rglob("*.py")):
            if taken >= PER_PACKAGE or "test" in path.as_posix():
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError):
                continue
            for node in tree.body:
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name.startswith("_"):
                    continue
                doc = ast.get_docstring(node)
                if not doc:
                    continue
                summary = doc.split("\n\n")[0].replace("\n", " ").strip()
                if not 40 <= len(summary) <= 700:
                    continue
                params = _param_docs(doc)
                props: dict[str, object] = {}
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.arg in ("self", "cls"):
                        continue
                    prop: dict[str, object] = {"type": _json_type(arg.annotation)}
                    if arg.arg in params:
                        prop["description"] = params[arg.arg]
                    props[arg.arg] = prop
                n_defaults = len(node.args.defaults)
                positional = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
                required = positional[: len(positional) - n_defaults] if n_defaults else positional
                tool = {
                    "name": node.name,
                    "description": summary,
                    "inputSchema": {"type": "object", "properties": props, "required": required},
                }
                rel = path.relative_to(site_packages).as_posix()
                records.append(
                    _record(
                        f"benign-ml/pytool/{rel}:{node.lineno}",
                        json.dumps(tool),
                        "tool_description",
                        f"site-packages/{rel}",
                    )
                )
                taken += 1
                if taken >= PER_PACKAGE:
                    break
    _write("pytools.jsonl", records)


def debdocs(doc_root: Path) -> None:
    records: list[dict[str, object]] = []
    files = sorted(p for p in doc_root.glob("*/README*") if p.is_file())
    for path in files:
        if len(records) >= MAX_DEBDOCS:
            break
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError):
            continue
        taken = 0
        for para in re.split(r"\n\s*\n", text):
            para = para.strip()
            if 200 <= len(para) <= 2500 and sum(c.isalpha() for c in para) > 0.6 * len(para):
                kind = "document" if len(records) % 2 == 0 else "tool_result"
                rel = path.relative_to(doc_root).as_posix()
                records.append(_record(f"benign-ml/debdoc/{rel}:{taken}", para, kind, f"{doc_root}/{rel}"))
                taken += 1
                if taken >= 3 or len(records) >= MAX_DEBDOCS:
                    break
    _write("debdocs.jsonl", records)


def _lines(name: str) -> list[str]:
    return [x.strip() for x in (HERE / name).read_text(encoding="utf-8").split("\n") if x.strip()]


def _insert_middle(carrier: str, payload: str) -> str:
    cut = carrier.find(". ", len(carrier) // 3)
    cut = len(carrier) if cut < 0 else cut + 2
    return f"{carrier[:cut]}{payload} {carrier[cut:]}".strip()


def _poison(tool_json: str, payload: str, position: int) -> str:
    tool = json.loads(tool_json)
    props = tool.get("inputSchema", {}).get("properties", {})
    if position == 1 and props:
        first = next(iter(props.values()))
        first["description"] = (first.get("description", "") + " " + payload).strip()
    elif position == 2:
        tool["description"] = payload + " " + tool.get("description", "")
    else:
        tool["description"] = tool.get("description", "") + " " + payload
    return json.dumps(tool)


SHORT_TOOL_NAMES = (
    "x",
    "ping",
    "echo",
    "get_time",
    "health",
    "version",
    "noop",
    "search",
    "add",
    "list_items",
    "status",
    "whoami",
    "now",
    "random_number",
    "get",
    "run",
    "help",
    "info",
    "reset_view",
    "refresh",
)


def short() -> None:
    records = []
    for i, line in enumerate(_lines("short.txt")):
        kind, text = line.split("\t", 1)
        records.append(_record(f"benign-ml/short/{i}", text, kind, "written"))
    for i, name in enumerate(SHORT_TOOL_NAMES):
        variants = (
            {"name": name},
            {"name": name, "inputSchema": {"type": "object", "properties": {}}},
            {"name": name, "description": name.replace("_", " ").capitalize() + ".", "inputSchema": {"type": "object"}},
        )
        tool = variants[i % 3]
        records.append(_record(f"benign-ml/short-tool/{i}", json.dumps(tool), "tool_description", "written"))
    _write("short.jsonl", records)


def attacks() -> None:
    records: list[dict[str, object]] = []
    carriers = [json.loads(x)["text"] for x in (HERE / "tool_results.jsonl").read_text().splitlines()]
    carriers += [json.loads(x)["text"] for x in (HERE / "debdocs.jsonl").read_text().splitlines()]
    for i, attack in enumerate(_lines("attacks_written.txt")):
        records.append(
            {**_record(f"attack-ml/prompt/{i}", attack, "prompt", "written"), "label": 1, "category": "attack_written"}
        )
        text = _insert_middle(carriers[(i * 7) % len(carriers)], attack)
        records.append(
            {
                **_record(f"attack-ml/result/{i}", text, "tool_result", "written"),
                "label": 1,
                "category": "indirect_written",
            }
        )
    written_tools = _lines("tools.txt")
    derived = [json.loads(x)["text"] for x in (HERE / "pytools.jsonl").read_text().splitlines()]
    for i, payload in enumerate(_lines("poison_written.txt")):
        for j, base in enumerate((written_tools[i % len(written_tools)], derived[(i * 13) % len(derived)])):
            text = _poison(base, payload, (i + j) % 3)
            records.append(
                {
                    **_record(f"attack-ml/tool/{i}/{j}", text, "tool_description", "written"),
                    "label": 1,
                    "category": "poisoning_written",
                }
            )
    _write("attacks.jsonl", records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--site-packages", type=Path, default=Path("/work/venv/lib/python3.11/site-packages"))
    parser.add_argument("--doc-root", type=Path, default=Path("/usr/share/doc"))
    args = parser.parse_args()
    written()
    if args.site_packages.is_dir():
        pytools(args.site_packages)
    if args.doc_root.is_dir():
        debdocs(args.doc_root)
    short()
    attacks()


if __name__ == "__main__":
    main()
