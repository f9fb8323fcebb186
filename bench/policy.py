"""Policy engine evaluation latency: p50/p99 with 1, 100 and 1,000 rules.

    python bench/policy.py [--iterations 20000]

Each policy is a realistic mix (tool-name equality and globs, role checks, finding categories and severities,
score thresholds, RE2 regexes on tool arguments, `in` lists), all on the `tool_call` surface so every rule is a
candidate for the benchmark event (surface pre-filtering would otherwise make the figures look better than a
worst case). The event is an MCP `tools/call` with three findings. Target (issue 3): p50 <= 20 us at 100 rules.
"""

from __future__ import annotations

import argparse
import statistics
import time

from cisora_mesh.events import Direction, Finding, McpMessage, Severity, Subject
from cisora_mesh.policy import PolicyEngine

TEMPLATES = (
    'block tool_call when tool.name == "tool_{i}" and subject.roles not in ["admin"]',
    'review tool_call when findings.category == "cat_{i}" and score >= 0.{d}',
    'log_only tool_call when tool.name matches "prefix_{i}_*"',
    'redact tool_call when tool.args.path regex "^/secret/{i}/" and findings.severity >= "high"',
    'block tool_call when tool.name in ["a_{i}", "b_{i}", "c_{i}"] or tool.args.amount > {i}000',
    'review tool_call when not (subject.tenant == "t{i}") and findings.rule_id == "DLP-{i}"',
)


def policy_text(n: int) -> str:
    lines = ['policy "bench" version "1"']
    for i in range(n):
        body = TEMPLATES[i % len(TEMPLATES)].format(i=i, d=(i % 9) + 1)
        lines.append(f"rule B{i} category bench severity medium {body}")
    return "\n".join(lines)


EVENT = McpMessage(
    direction=Direction.OUTBOUND,
    method="tools/call",
    params={"name": "search_docs", "arguments": {"path": "/home/user/notes.txt", "amount": 12, "q": "quarterly"}},
    subject=Subject(tenant="acme", agent="planner", roles=("dev", "ops")),
)
FINDINGS = tuple(
    Finding(detector="dlp", rule_id=f"DLP-X{i}", category=c, severity=s, confidence=0.9)
    for i, (c, s) in enumerate((("pii", Severity.MEDIUM), ("secret", Severity.HIGH), ("hidden", Severity.LOW)))
)


def measure(engine: PolicyEngine, iterations: int) -> tuple[float, float, int]:
    for _ in range(min(1000, iterations)):
        engine.evaluate(EVENT, FINDINGS)
    samples = []
    matched = 0
    for _ in range(iterations):
        start = time.perf_counter_ns()
        result = engine.evaluate(EVENT, FINDINGS)
        samples.append(time.perf_counter_ns() - start)
        matched = len(result.matched)
    samples.sort()
    p50 = statistics.median(samples) / 1000
    p99 = samples[int(len(samples) * 0.99) - 1] / 1000
    return p50, p99, matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20000)
    args = parser.parse_args()
    print(f"{'rules':>6} {'compile ms':>11} {'p50 us':>8} {'p99 us':>8} {'matched':>8}")
    for n in (1, 100, 1000):
        text = policy_text(n)
        start = time.perf_counter()
        engine = PolicyEngine.from_text(text)
        compile_ms = (time.perf_counter() - start) * 1000
        iterations = args.iterations if n < 1000 else max(1000, args.iterations // 5)
        p50, p99, matched = measure(engine, iterations)
        print(f"{n:>6} {compile_ms:>11.1f} {p50:>8.2f} {p99:>8.2f} {matched:>8}")
    print("target: p50 <= 20 us at 100 rules")


if __name__ == "__main__":
    main()
