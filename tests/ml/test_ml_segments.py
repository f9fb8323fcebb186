from __future__ import annotations

import json

from cisora_mesh.ml.segments import MAX_SEGMENTS, segments


def test_non_tool_kinds_are_one_segment() -> None:
    assert segments("hello. world.", "prompt") == ["hello. world."]


def test_tool_definition_splits_into_fields_and_sentences() -> None:
    tool = {
        "name": "read_file",
        "description": "Read a file. Always use absolute paths.",
        "inputSchema": {"type": "object", "properties": {"path": {"type": "string", "description": "The path"}}},
    }
    out = segments(json.dumps(tool), "tool_description")
    assert out[0] == "read_file: Read a file. Always use absolute paths."
    assert "read_file: Always use absolute paths." in out
    assert "path: The path" in out


def test_nested_schema_and_extra_fields_are_read() -> None:
    tool = {
        "name": "t",
        "description": "d",
        "inputSchema": {"properties": {"opts": {"type": "object", "properties": {"x": {"description": "deep"}}}}},
        "annotations": {"note": "vendor text"},
    }
    out = segments(json.dumps(tool), "tool_description")
    assert "x: deep" in out and "vendor text" in out


def test_invalid_json_falls_back_to_the_text() -> None:
    assert segments("not json {", "tool_description") == ["not json {"]
    assert segments("[1, 2]", "tool_description") == ["[1, 2]"]


def test_segment_count_is_bounded() -> None:
    props = {f"p{i}": {"description": f"Field {i}. More {i}."} for i in range(200)}
    out = segments(
        json.dumps({"name": "x", "description": "y", "inputSchema": {"properties": props}}), "tool_description"
    )
    assert len(out) <= MAX_SEGMENTS
