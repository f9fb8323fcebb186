"""DlpStage behaviour: tenant settings, actions, content-kind scope, offsets, custom patterns."""

from __future__ import annotations

import pytest

from cisora_mesh.config import CustomPattern, DlpAction, DlpSettings, FailMode, InjectionSettings, TenantPolicy
from cisora_mesh.events import Content, ContentKind, ContentScan, Finding, Severity, Verdict
from cisora_mesh.pipeline.base import ScanContext, ScanText, Stage
from cisora_mesh.pipeline.redaction import finding_spans, redact
from cisora_mesh.pipeline.stages.dlp import DlpStage
from cisora_mesh.pipeline.stages.normalize import NormalizeStage

STAGE = DlpStage()
GH_TOKEN = "ghp_" + "Zq8Xw2Lm4Np6Rt0Vy3Bc5Df7Gh9Jk1Ms2PaQ"
TEXT = f"contact jane.doe@acme.io, token {GH_TOKEN}"


def policy(**dlp: object) -> TenantPolicy:
    return TenantPolicy.build(
        "t1", injection=InjectionSettings(), dlp=DlpSettings.model_validate(dlp), fail_mode=FailMode.OPEN
    )


def run(text: str, pol: TenantPolicy | None = None, kind: ContentKind = ContentKind.OUTPUT) -> list[Finding]:
    ctx = ScanContext(event=ContentScan(kind=kind, text=text), policy=pol or policy())
    ctx.texts.append(ScanText(content=Content(kind=kind, text=text), match_text=text))
    STAGE.run(ctx)
    return ctx.findings


def test_is_a_stage() -> None:
    assert isinstance(STAGE, Stage)
    assert STAGE.name == "dlp"
    assert len(STAGE.detectors) >= 14


def test_finding_fields() -> None:
    findings = run(TEXT)
    by_rule = {f.rule_id: f for f in findings}
    email = by_rule["DLP-PII-EMAIL"]
    assert (email.detector, email.category, email.severity, email.label) == (
        "dlp",
        "pii",
        Severity.MEDIUM,
        "EMAIL_ADDRESS",
    )
    assert TEXT[email.start : email.end] == "jane.doe@acme.io"
    gh = by_rule["DLP-SECRET-GITHUB-TOKEN"]
    assert (gh.category, gh.severity, gh.label, gh.action) == (
        "secret",
        Severity.CRITICAL,
        "GITHUB_TOKEN",
        Verdict.REDACT,
    )
    assert gh.confidence > email.confidence > 0.5


def test_stage_without_builtins_runs_custom_only() -> None:
    ctx = ScanContext(event=ContentScan(kind=ContentKind.OUTPUT, text=TEXT), policy=policy())
    ctx.texts.append(ScanText(content=Content(kind=ContentKind.OUTPUT, text=TEXT), match_text=TEXT))
    DlpStage(()).run(ctx)
    assert ctx.findings == []


def test_clean_text_has_no_findings() -> None:
    assert run("The quarterly report is attached; version 1.2.3 ships on Monday at 10:30.") == []


@pytest.mark.parametrize(
    ("action", "verdict"),
    [(DlpAction.ALERT, Verdict.ALLOW), (DlpAction.REDACT, Verdict.REDACT), (DlpAction.BLOCK, Verdict.BLOCK)],
)
def test_actions(action: DlpAction, verdict: Verdict) -> None:
    findings = run(TEXT, policy(action=action))
    assert len(findings) == 2
    assert {f.action for f in findings} == {verdict}


@pytest.mark.parametrize("kind", [ContentKind.OUTPUT, ContentKind.TOOL_ARGUMENTS])
def test_leaving_data_enforces_every_category(kind: ContentKind) -> None:
    findings = run(TEXT, policy(action="block"), kind)
    assert {f.category: f.action for f in findings} == {"pii": Verdict.BLOCK, "secret": Verdict.BLOCK}


@pytest.mark.parametrize(
    "kind", [ContentKind.PROMPT, ContentKind.TOOL_RESULT, ContentKind.DOCUMENT, ContentKind.TOOL_DESCRIPTION]
)
def test_entering_data_enforces_secrets_only(kind: ContentKind) -> None:
    findings = run(TEXT, policy(action="block"), kind)
    assert {f.category: f.action for f in findings} == {"pii": Verdict.ALLOW, "secret": Verdict.BLOCK}


def test_disabled() -> None:
    assert run(TEXT, policy(enabled=False)) == []


def test_categories() -> None:
    assert {f.category for f in run(TEXT, policy(categories=["secret"]))} == {"secret"}
    assert {f.category for f in run(TEXT, policy(categories=["pii"]))} == {"pii"}
    assert run(TEXT, policy(categories=[])) == []


def test_disabled_rules() -> None:
    findings = run(TEXT, policy(disabled_rules=["DLP-PII-EMAIL"]))
    assert [f.rule_id for f in findings] == ["DLP-SECRET-GITHUB-TOKEN"]


def test_derived_texts_are_skipped() -> None:
    ctx = ScanContext(event=ContentScan(kind=ContentKind.OUTPUT, text=TEXT), policy=policy())
    ctx.texts.append(
        ScanText(content=Content(kind=ContentKind.OUTPUT, text=TEXT), match_text=TEXT, derived="unicode_tags")
    )
    STAGE.run(ctx)
    assert ctx.findings == []


def test_location_is_carried() -> None:
    content = Content(kind=ContentKind.TOOL_ARGUMENTS, text=TEXT, location="/params/arguments/body")
    ctx = ScanContext(event=ContentScan(kind=ContentKind.OUTPUT, text=TEXT), policy=policy())
    ctx.texts.append(ScanText(content=content, match_text=TEXT))
    STAGE.run(ctx)
    assert {f.location for f in ctx.findings} == {"/params/arguments/body"}


def test_generic_assignment_shadowed_by_provider_rule() -> None:
    findings = run(f"GITHUB_TOKEN={GH_TOKEN}")
    assert [f.rule_id for f in findings] == ["DLP-SECRET-GITHUB-TOKEN"]


def _normalised(text: str) -> ScanContext:
    ctx = ScanContext(event=ContentScan(kind=ContentKind.OUTPUT, text=text), policy=policy())
    NormalizeStage().run(ctx)
    STAGE.run(ctx)
    return ctx


def test_offsets_on_non_ascii_text() -> None:
    text = f"Grüße aus Köln 🎉 — schreib an jürgen@beispiel.de oder nutze {GH_TOKEN} bitte"
    ctx = _normalised(text)
    spans = {f.rule_id: text[f.start : f.end] for f in ctx.findings if f.start is not None and f.end is not None}
    assert spans["DLP-SECRET-GITHUB-TOKEN"] == GH_TOKEN
    assert spans["DLP-PII-EMAIL"] == "jürgen@beispiel.de"


def test_offsets_with_hidden_characters_inside_the_value() -> None:
    # A zero-width space splits the token for a naive matcher; normalisation removes it and the span still
    # covers the whole token in the original text, so redaction removes it all.
    hidden = GH_TOKEN[:10] + "\u200b" + GH_TOKEN[10:]
    text = f"é token {hidden} end"
    ctx = _normalised(text)
    [gh] = [f for f in ctx.findings if f.rule_id == "DLP-SECRET-GITHUB-TOKEN"]
    assert text[gh.start : gh.end] == hidden
    assert redact(text, finding_spans(ctx.findings)) == "é token [REDACTED:GITHUB_TOKEN] end"


def test_redaction_of_stage_findings() -> None:
    findings = run(TEXT)
    redacted = redact(TEXT, finding_spans(findings))
    assert redacted == "contact [REDACTED:EMAIL_ADDRESS], token [REDACTED:GITHUB_TOKEN]"
    assert run(redacted) == []


def test_custom_patterns() -> None:
    pol = policy(
        custom_patterns=[
            CustomPattern(
                name="internal_api_token", regex=r"cis_[A-Za-z0-9]{32}", category="secret", severity=Severity.CRITICAL
            ),
            CustomPattern(name="employee_id", regex=r"EMP-\d{6}", category="pii", severity=Severity.LOW),
        ]
    )
    token = "cis_" + "a1B2c3D4" * 4
    text = f"emp EMP-123456 uses {token}"
    findings = {f.rule_id: f for f in run(text, pol, ContentKind.PROMPT)}
    tok = findings["DLP-CUSTOM-internal_api_token"]
    assert (tok.detector, tok.category, tok.severity, tok.label, tok.action) == (
        "custom_dlp",
        "secret",
        Severity.CRITICAL,
        "INTERNAL_API_TOKEN",
        Verdict.REDACT,
    )
    assert text[tok.start : tok.end] == token
    emp = findings["DLP-CUSTOM-employee_id"]
    assert (emp.category, emp.severity, emp.action) == ("pii", Severity.LOW, Verdict.ALLOW)  # entering: PII recorded
    assert redact(text, finding_spans(findings.values())) == (
        "emp [REDACTED:EMPLOYEE_ID] uses [REDACTED:INTERNAL_API_TOKEN]"
    )


def test_custom_patterns_respect_categories_and_disabled_rules() -> None:
    patterns = [CustomPattern(name="emp", regex=r"EMP-\d{6}"), CustomPattern(name="ord", regex=r"ORD-\d{4}")]
    text = "EMP-123456 ORD-1234"
    assert {f.rule_id for f in run(text, policy(custom_patterns=patterns))} == {"DLP-CUSTOM-emp", "DLP-CUSTOM-ord"}
    assert run(text, policy(custom_patterns=patterns, categories=["secret", "pii"])) == []
    only = run(text, policy(custom_patterns=patterns, disabled_rules=["DLP-CUSTOM-emp"]))
    assert [f.rule_id for f in only] == ["DLP-CUSTOM-ord"]
    assert {f.category for f in only} == {"custom"}


def test_invalid_custom_regex_rejected_at_save_time() -> None:
    with pytest.raises(ValueError, match="invalid regex"):
        DlpSettings(custom_patterns=(CustomPattern(name="bad", regex=r"(a"),))


def test_malformed_token_candidates_do_not_raise() -> None:
    # Validators must swallow odd input rather than raise with the value in the message.
    text = "eyJ" + "A" * 20 + ".eyJ" + "%" * 10 + "." + "Z" * 10
    assert [f for f in run(text) if f.rule_id == "DLP-SECRET-JWT"] == []


def test_offsets_on_non_ascii_match_text() -> None:
    # Characters that normalisation keeps (CJK, emoji) leave match_text non-ASCII: matching runs on UTF-8 bytes
    # and the offsets must still be character offsets.
    text = f"東京🎉 jane@acme.io、電話 (415) 555-2671 と {GH_TOKEN}。終わり 8.8.8.8"
    spans = sorted(text[f.start : f.end] for f in run(text) if f.start is not None)
    assert spans == sorted(["jane@acme.io", "(415) 555-2671", GH_TOKEN, "8.8.8.8"])


def test_weak_context_finding_is_shadowed_by_a_specific_one() -> None:
    # `api_key = ghp_...`: the GitHub rule reports the value; the generic key rule must not add a second finding.
    findings = run(f"api_key = {GH_TOKEN}")
    assert [f.rule_id for f in findings] == ["DLP-SECRET-GITHUB-TOKEN"]


def test_two_weak_phone_rules_report_one_finding() -> None:
    # A labelled national number matches the labelled and the national-format rules: one finding, the more confident.
    text = "Phone: 020 7946 0958"
    findings = run(text)
    assert [(f.rule_id, text[f.start : f.end]) for f in findings] == [("DLP-PII-PHONE-LABELLED", "020 7946 0958")]
