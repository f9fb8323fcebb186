"""The built-in output-DLP detector table (data only; `stages.dlp.DlpStage` compiles and runs it).

Each entry is written from the provider's published token format (prefix, alphabet, length), in the style of
detect-secrets / gitleaks: a regex that finds the right *shape* and an optional validator (checksum, structure,
entropy, placeholder filter) that runs only on candidates. All regexes are RE2 syntax (no lookaround, no
backreferences). Token boundaries are the `left`/`right` character sets, checked by the stage on candidates;
a detector that needs context (`aws_secret_access_key = ...`, `scheme://user:password@`) matches the context
and names in `group` the capture group holding the value to report and redact.

Severities follow the seed's Output DLP doc: credentials that grant access (API keys, private key blocks, JWTs)
are critical; Google API keys (usually restricted, often public in web apps) are high, and so are SSNs, payment
cards, IBANs, password hashes and webhook URLs; email and phone are medium; IP addresses are low; test-mode Stripe
keys are medium and publishable keys low. `confidence` is the rule's base estimate that a validated match is a
true positive; validators may lower it per match (private IP, reserved e-mail domain, bare digit run, ...).
Context rules (a credential-bearing key name, an Authorization scheme, a phone label or national format) carry less
base confidence than validated prefixed tokens, and the stage drops their findings where a specific rule reports
the same value (`stages.dlp.WEAK_RULES`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Final, Literal

from cisora_mesh.events import Severity
from cisora_mesh.pipeline import validators as v

Category = Literal["secret", "pii"]

# Characters that must not touch a match on its left / right. RE2 has no lookaround, and consuming the neighbour
# in the regex would make `finditer` miss the second of two matches separated by one character, so the stage
# checks these in Python on candidates only. A '.' on the right only counts when a word character follows it
# (a sentence-final full stop is punctuation, `1.2.3.4.5` is a version string).
_WORD: Final = string.ascii_letters + string.digits + "_"
TOK: Final = _WORD + "-"
B64: Final = _WORD + "+/="
DIGITS: Final = string.digits


@dataclass(frozen=True, slots=True)
class Detector:
    rule_id: str
    label: str  # redaction label: [REDACTED:<label>]
    category: Category
    severity: Severity
    confidence: float
    regex: str
    validator: v.Validator | None = None
    group: int = 0  # capture group holding the reported value (0 = the whole match)
    left: str = ""  # characters that may not directly precede the value
    right: str = ""  # characters that may not directly follow the value (see above for '.')
    # (byte, run): every match holds `byte` once, preceded only by `run` characters, so the stage finds matches by
    # seeking to `byte` instead of letting RE2 walk the whole text (`_regex.iter_spans_seeking`).
    seek: tuple[str, str] | None = None


CRIT, HIGH, MED, LOW = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW

# A data table: one detector per block reads better than the formatter's one argument per line.
# fmt: off
BUILTIN_DETECTORS: Final[tuple[Detector, ...]] = (
    # --- PII ---------------------------------------------------------------------------------------------------
    # SSN written AAA-GG-SSSS or with spaces; a bare 9-digit run only next to an explicit "SSN" label.
    Detector(
        "DLP-PII-US-SSN", "US_SSN", "pii", HIGH, 0.85,
        r"\b(?:\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4})\b",
        validator=v.us_ssn, left=DIGITS + "-", right=DIGITS + "-",
    ),
    Detector(
        "DLP-PII-US-SSN-LABELLED", "US_SSN", "pii", HIGH, 0.8,
        r"(?i:\bssn|social security (?:number|no\.?|#))\s*(?:is|:|#|=)?\s*(\d{9})",
        validator=v.us_ssn, group=1, right=DIGITS,
    ),
    # 12-19 digits contiguous (12 only for Maestro, see validators.payment_card), or in the printed 4-4-4-4(-3),
    # 4-6-5 (Amex) and 4-6-4 (Diners) groupings, starting with a digit some network issues under (2-6, or legacy
    # JCB 1800): ms timestamps and ids never get this far.
    # `\b` (zero-width, ASCII word boundary) keeps sub-runs of longer digit strings out of the candidates.
    Detector(
        "DLP-PII-PAYMENT-CARD", "CREDIT_CARD", "pii", HIGH, 0.9,
        r"\b(?:[2-6]\d{3}|1800)(?:\d{8,15}|[ \-]\d{4}[ \-]\d{4}[ \-]\d{1,4}(?:[ \-]\d{3})?|[ \-]\d{6}[ \-]\d{4,5})\b",
        validator=v.payment_card, left=DIGITS + "-", right=DIGITS + "-",
    ),
    Detector(
        "DLP-PII-EMAIL", "EMAIL_ADDRESS", "pii", MED, 0.9,
        r"[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,24}\b",
        validator=v.email, right=TOK, seek=("@", string.ascii_letters + string.digits + "._%+-"),
    ),
    # NANP: optional +1, area code optionally in parentheses, separators space/dot/dash, optional extension.
    # Word boundaries in the regex keep digit sub-runs (timestamps, ids) from ever becoming candidates.
    Detector(
        "DLP-PII-US-PHONE", "PHONE_NUMBER", "pii", MED, 0.7,
        r"(?:(?:\+1[ .\-]?|\b1[ .\-]?)?\([2-9]\d{2}\) ?|(?:\+1[ .\-]?|\b1[ .\-]?|\b)[2-9]\d{2}[ .\-]?)"
        r"[2-9]\d{2}[ .\-]?\d{4}(?: ?(?:x|ext\.?) ?\d{1,5})?\b",
        validator=v.nanp_phone, left=_WORD + "+-.", right=TOK + ".",
    ),
    # ITU-T E.164 numbers written internationally: `+` or the `00` prefix, country code, then groups separated by
    # space/dot/dash, optionally the printed national trunk `(0)` and an area code in parentheses. The validator
    # counts 8-15 digits (E.164) and drops dates and typed runs.
    Detector(
        "DLP-PII-INTL-PHONE", "PHONE_NUMBER", "pii", MED, 0.75,
        r"(?:\+|\b00)[1-9]\d{0,3}(?:[ .\-]?(?:\(0\)[ .\-]?)?(?:\(\d{1,4}\)|\d{1,5})){1,6}"
        r"(?: ?(?:x|ext\.?) ?\d{1,5})?",
        # Not after '/', '.' or '-': DOIs and paths (`10.1016/0020-0190`) carry 00-prefixed digit groups.
        validator=v.intl_phone, left=_WORD + "/.-", right=_WORD + ".",
    ),
    # National format with the trunk prefix 0 (`0xx xxx xx xx`, `(0x) xxxx xxxx`, `0x.xx.xx.xx.xx`): separators are
    # required, so bare digit runs (ids, amounts) never qualify. Less telling than `+`, hence lower confidence.
    Detector(
        "DLP-PII-NATIONAL-PHONE", "PHONE_NUMBER", "pii", MED, 0.5,
        r"(?:\(0[1-9]\d{0,3}\) ?|\b0[1-9]\d{0,4}[ .\-/])\d{2,8}(?:[ .\-]\d{2,4}){0,3}",
        validator=v.national_phone, left=_WORD + ".-+/", right=_WORD + ".",
    ),
    # Any grouping of 7-15 digits right after a phone label (presidio-style context words).
    Detector(
        "DLP-PII-PHONE-LABELLED", "PHONE_NUMBER", "pii", MED, 0.6,
        r"(?i:\b(?:phone|telephone|tel|mobile|cell|fax|whatsapp|call me (?:on|at)))(?:[ \t]*(?:number|no\.?|#))?"
        r"[ \t]*[:.]?\s{0,3}(\+?\(?\d[\d ().\-]{4,20}\d)",
        validator=v.labelled_phone, group=1, right=_WORD,
    ),
    # A dotted quad not inside a longer dotted run (version strings like 1.2.3.4.5).
    Detector(
        "DLP-PII-IPV4", "IP_ADDRESS", "pii", LOW, 0.6,
        r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
        validator=v.ipv4, left=_WORD + ".", right=_WORD + ".",
    ),
    # RFC 4291 text forms: eight groups, or '::' compression (optionally with an embedded dotted quad);
    # `ipaddress` decides. The left boundary is part of the regex (not a Python check) so that the '::' of
    # `std::vector` or `Foo::bar` in code never becomes a candidate; clock times (12:30:45) cannot match.
    Detector(
        "DLP-PII-IPV6", "IP_ADDRESS", "pii", LOW, 0.6,
        r"(?:^|[^0-9A-Za-z_:.])((?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){7}"
        r"|(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?)"
        r"(?:\.\d{1,3}){0,3})",
        validator=v.ipv6, group=1, right=_WORD + ":.",
    ),
    # ISO 13616 IBAN (compact or in groups of four); the mod-97 check rejects nearly all look-alikes.
    Detector(
        "DLP-PII-IBAN", "IBAN_CODE", "pii", HIGH, 0.9,
        r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?",
        validator=v.iban, left=_WORD, right=_WORD,
    ),
    # --- secrets: private keys and tokens with structure ----------------------------------------------------------
    # RFC 7468 PEM (and OpenSSH/PGP private blocks): header, optional RFC 1421 headers (Proc-Type, DEK-Info),
    # base64 lines (real newlines or JSON-escaped \n), optional footer; a block cut short is still reported.
    Detector(
        "DLP-SECRET-PRIVATE-KEY", "PRIVATE_KEY", "secret", CRIT, 0.97,
        r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----"
        r"(?:\s|\\r|\\n)*(?:[A-Za-z][A-Za-z\-]*: ?[^\r\n\\]*(?:\r?\n|(?:\\r)?\\n)(?:\s|\\r|\\n)*)*"
        r"(?:[ \t]*[A-Za-z0-9+/=]+[ \t]*(?:\r?\n|(?:\\r)?\\n))*[A-Za-z0-9+/=]*"
        r"(?:-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----)?",
        validator=v.private_key,
    ),
    # A PEM private key wrapped in base64 (Kubernetes secrets, env vars): "LS0tLS1CRUdJTi" is base64("-----BEGIN");
    # the validator decodes the start and requires "PRIVATE KEY" in the header.
    Detector(
        "DLP-SECRET-PRIVATE-KEY-BASE64", "PRIVATE_KEY", "secret", CRIT, 0.95,
        r"LS0tLS1CRUdJTi[A-Za-z0-9+/]{40,}={0,2}",
        validator=v.base64_private_key, left=_WORD + "+/", right=B64,
    ),
    # JWS compact serialisation (RFC 7515 s7.1 / RFC 7519): base64url JSON header starting '{"' -> "eyJ".
    Detector(
        "DLP-SECRET-JWT", "JWT", "secret", CRIT, 0.95,
        r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*",
        validator=v.jwt, left=TOK, right=TOK,
    ),
    # Anthropic: sk-ant-<kind><2-digit version>-<base64url body, ~95 chars> (e.g. sk-ant-api03-..., admin01).
    Detector(
        "DLP-SECRET-ANTHROPIC-KEY", "ANTHROPIC_API_KEY", "secret", CRIT, 0.98,
        r"sk-ant-[a-z]{2,10}\d{2}-[A-Za-z0-9_\-]{80,}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # OpenAI: project/service-account/admin keys (sk-proj-, sk-svcacct-, sk-admin-) and legacy user keys,
    # which embed "T3BlbkFJ" (base64 of "OpenAI") between two 20-character halves, or are 48 alphanumerics.
    Detector(
        "DLP-SECRET-OPENAI-KEY", "OPENAI_API_KEY", "secret", CRIT, 0.95,
        r"sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{40,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"
        r"|[A-Za-z0-9]{48})",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # AWS access key ids: 4-letter type prefix (AKIA long-term, ASIA STS, ...) + 16 uppercase base32-ish chars.
    Detector(
        "DLP-SECRET-AWS-ACCESS-KEY", "AWS_ACCESS_KEY", "secret", CRIT, 0.95,
        r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|A3T[A-Z0-9])[A-Z0-9]{16}",
        validator=v.aws_access_key, left=_WORD, right=_WORD,
    ),
    # AWS secret access key: 40 base64 chars, only credible next to a key name that says so.
    Detector(
        "DLP-SECRET-AWS-SECRET-KEY", "AWS_SECRET_KEY", "secret", CRIT, 0.9,
        r"(?i:aws[a-z0-9_.\-]{0,20}secret[a-z0-9_.\-]{0,20}|secret_?access_?key)(?:\\?[\"'])?\s*(?::|=>?|:=)\s*"
        r"(?:\\?[\"'])?"
        r"([A-Za-z0-9/+]{40})",
        validator=v.aws_secret_key, group=1, right=B64,
    ),
    # GitHub: ghp_/gho_/ghu_/ghs_/ghr_ + 36 base62 (30 random + CRC32), fine-grained github_pat_<22>_<59>.
    Detector(
        "DLP-SECRET-GITHUB-TOKEN", "GITHUB_TOKEN", "secret", CRIT, 0.97,
        r"gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # Stripe: secret and restricted keys; live mode is critical, test mode cannot move money.
    Detector(
        "DLP-SECRET-STRIPE-LIVE-KEY", "STRIPE_API_KEY", "secret", CRIT, 0.97,
        r"(?:sk|rk)_live_[A-Za-z0-9]{20,247}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-STRIPE-TEST-KEY", "STRIPE_API_KEY", "secret", MED, 0.95,
        r"(?:sk|rk)_test_[A-Za-z0-9]{20,247}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # Publishable keys are meant to ship in web pages; reported for visibility only.
    Detector(
        "DLP-SECRET-STRIPE-PUBLISHABLE-KEY", "STRIPE_PUBLISHABLE_KEY", "secret", LOW, 0.95,
        r"pk_(?:live|test)_[A-Za-z0-9]{20,247}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # Google API key: "AIza" + 35 base64url characters (39 total).
    Detector(
        "DLP-SECRET-GOOGLE-API-KEY", "GOOGLE_API_KEY", "secret", HIGH, 0.95,
        r"AIza[0-9A-Za-z_\-]{35}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # Google OAuth client secret (GOCSPX-), OAuth 2.0 access tokens (ya29.) and refresh tokens (1//0...).
    Detector(
        "DLP-SECRET-GOOGLE-OAUTH", "GOOGLE_OAUTH_SECRET", "secret", CRIT, 0.95,
        r"GOCSPX-[A-Za-z0-9_\-]{28}|ya29\.[0-9A-Za-z_\-]{30,}|1//0[0-9A-Za-z_\-]{40,}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # Google OAuth 2.0 client ids (<project number>-<32 base32hex>.apps.googleusercontent.com): an identifier, not a
    # secret, but it names the OAuth client a leaked client secret belongs to; reported for visibility.
    Detector(
        "DLP-SECRET-GOOGLE-CLIENT-ID", "GOOGLE_CLIENT_ID", "secret", LOW, 0.9,
        r"\d{6,14}-[a-v0-9]{32}\.apps\.googleusercontent\.com",
        validator=v.random_token, left=_WORD, right=TOK,
    ),
    # Slack tokens: xoxb (bot), xoxp (user), xoxa/xoxr (app/refresh), xoxs, xoxe; app-level xapp-.
    Detector(
        "DLP-SECRET-SLACK-TOKEN", "SLACK_TOKEN", "secret", CRIT, 0.95,
        r"xox[abeoprs]-(?:\d+-)?[0-9A-Za-z\-]{10,250}|xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]{32,}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-SLACK-WEBHOOK", "SLACK_WEBHOOK", "secret", HIGH, 0.95,
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{20,}",
        validator=v.random_token,
    ),
    # GitLab tokens: glpat- (personal), gldt- (deploy), glptt- (pipeline trigger), glrt- (runner), ..., and the
    # legacy runner registration token prefix GR1348941 (GitLab docs, "Token prefixes").
    Detector(
        "DLP-SECRET-GITLAB-TOKEN", "GITLAB_TOKEN", "secret", CRIT, 0.95,
        r"gl(?:pat|dt|ptt|rt|cbt|oas|soat|ft|imt|agent)-[0-9A-Za-z_\-]{20,}|GR1348941[0-9A-Za-z_\-]{20,}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-NPM-TOKEN", "NPM_TOKEN", "secret", CRIT, 0.95,
        r"npm_[A-Za-z0-9]{36}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # PyPI API tokens are macaroons whose base64 always starts with the encoded "pypi.org" location.
    Detector(
        "DLP-SECRET-PYPI-TOKEN", "PYPI_TOKEN", "secret", CRIT, 0.98,
        r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}",
        left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-SENDGRID-KEY", "SENDGRID_API_KEY", "secret", CRIT, 0.97,
        r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # Twilio API key SID (SK + 32 hex); the matching secret has no prefix and is not detectable alone.
    Detector(
        "DLP-SECRET-TWILIO-API-KEY", "TWILIO_API_KEY", "secret", HIGH, 0.8,
        r"SK[0-9a-fA-F]{32}",
        validator=v.random_token, left=_WORD, right=_WORD,
    ),
    # Hugging Face user access tokens: "hf_" + 34 letters.
    Detector(
        "DLP-SECRET-HUGGINGFACE-TOKEN", "HUGGINGFACE_TOKEN", "secret", CRIT, 0.95,
        r"hf_[A-Za-z0-9]{34,40}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # Azure Storage account key in a connection string: 64 random bytes, base64 (88 chars, "==" padded).
    Detector(
        "DLP-SECRET-AZURE-STORAGE-KEY", "AZURE_STORAGE_KEY", "secret", CRIT, 0.95,
        r"(?i:AccountKey|SharedAccessKey)\s*=\s*([A-Za-z0-9+/]{40,86}={0,2})",
        validator=v.random_token, group=1, right=B64,
    ),
    # Microsoft Entra (Azure AD) client secrets: 3 chars, a digit, "Q~", then 31-34 chars.
    Detector(
        "DLP-SECRET-AZURE-AD-CLIENT-SECRET", "AZURE_CLIENT_SECRET", "secret", CRIT, 0.9,
        r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}",
        validator=v.random_token, left=TOK + "~.", right=TOK + "~",
    ),
    Detector(
        "DLP-SECRET-SHOPIFY-TOKEN", "SHOPIFY_TOKEN", "secret", CRIT, 0.95,
        r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-DIGITALOCEAN-TOKEN", "DIGITALOCEAN_TOKEN", "secret", CRIT, 0.95,
        r"do[opr]_v1_[a-f0-9]{64}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-SQUARE-TOKEN", "SQUARE_TOKEN", "secret", CRIT, 0.95,
        r"sq0(?:atp|csp|idp)-[0-9A-Za-z_\-]{22,43}|EAAA[A-Za-z0-9_\-+=]{60}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-HASHICORP-TOKEN", "HASHICORP_TOKEN", "secret", CRIT, 0.95,
        r"hv[sbr]\.[A-Za-z0-9_\-]{24,}|[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_\-=]{60,}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-DOPPLER-TOKEN", "DOPPLER_TOKEN", "secret", CRIT, 0.95,
        r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-GRAFANA-TOKEN", "GRAFANA_TOKEN", "secret", CRIT, 0.95,
        r"glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # New Relic: user/admin/insights keys carry an NRxx- prefix; ingest license keys are 40 chars ending "NRAL".
    Detector(
        "DLP-SECRET-NEWRELIC-KEY", "NEWRELIC_KEY", "secret", CRIT, 0.95,
        r"NR(?:AK|AA|II|IQ|JS|RA|RI)-[A-Za-z0-9_\-]{27,42}|[a-z0-9]{36}NRAL",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-SOURCEGRAPH-TOKEN", "SOURCEGRAPH_TOKEN", "secret", CRIT, 0.95,
        r"sgp_(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # Mapbox secret tokens ("sk." + a base64url JSON segment); "pk." public tokens are not reported.
    Detector(
        "DLP-SECRET-MAPBOX-TOKEN", "MAPBOX_TOKEN", "secret", CRIT, 0.95,
        r"sk\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{20,}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-ATLASSIAN-TOKEN", "ATLASSIAN_TOKEN", "secret", CRIT, 0.95,
        r"ATATT3[A-Za-z0-9_\-=]{150,}|ATCTT3[A-Za-z0-9_\-=]{150,}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-ARTIFACTORY-KEY", "ARTIFACTORY_KEY", "secret", CRIT, 0.9,
        r"AKCp[A-Za-z0-9]{69}|cmVmdGtu[A-Za-z0-9]{56}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-DATABRICKS-TOKEN", "DATABRICKS_TOKEN", "secret", CRIT, 0.9,
        r"dapi[a-f0-9]{32}(?:-\d)?",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(
        "DLP-SECRET-TELEGRAM-BOT-TOKEN", "TELEGRAM_BOT_TOKEN", "secret", CRIT, 0.9,
        r"\d{8,10}:AA[A-Za-z0-9_\-]{33}",
        validator=v.random_token, left=DIGITS, right=TOK,
    ),
    # age (age-encryption.org/v1) secret keys are Bech32 with the "AGE-SECRET-KEY-1" human-readable part.
    Detector(
        "DLP-SECRET-AGE-KEY", "AGE_SECRET_KEY", "secret", CRIT, 0.98,
        r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # --- secrets: more documented token prefixes ----------------------------------------------------------------
    # Each from the provider's documentation of its key format (prefix, alphabet, length); random_token drops
    # placeholders and low-entropy fillers.
    Detector(  # Postman API keys: PMAK-<24 hex>-<34 hex> (Postman docs, "Postman API keys" / secret scanner).
        "DLP-SECRET-POSTMAN-KEY", "POSTMAN_API_KEY", "secret", CRIT, 0.95,
        r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # Pulumi access tokens: pul-<40 hex>.
        "DLP-SECRET-PULUMI-TOKEN", "PULUMI_TOKEN", "secret", CRIT, 0.95,
        r"pul-[a-f0-9]{40}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # Tailscale: tskey-<kind>-<id>-<secret> (auth, api, client, scim, webhook keys).
        "DLP-SECRET-TAILSCALE-KEY", "TAILSCALE_KEY", "secret", CRIT, 0.95,
        r"tskey-(?:[a-z]+-)?[A-Za-z0-9]{6,}-[A-Za-z0-9]{16,}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # Adafruit IO keys: aio_ + 28 alphanumerics.
        "DLP-SECRET-ADAFRUIT-KEY", "ADAFRUIT_IO_KEY", "secret", HIGH, 0.9,
        r"aio_[A-Za-z0-9]{28}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # Airtable personal access tokens: pat<14 id chars>.<64 hex secret>.
        "DLP-SECRET-AIRTABLE-PAT", "AIRTABLE_TOKEN", "secret", CRIT, 0.95,
        r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # NuGet.org API keys: oy2 + 43 lower-case base32-ish characters (46 total).
        "DLP-SECRET-NUGET-KEY", "NUGET_API_KEY", "secret", CRIT, 0.9,
        r"oy2[a-z0-9]{43}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # Mailgun (legacy private API key key-<32 hex>) and Brevo/Sendinblue (xkeysib-/xsmtpsib-<64 hex>-<16>).
        "DLP-SECRET-MAIL-API-KEY", "MAIL_API_KEY", "secret", CRIT, 0.9,
        r"key-[0-9a-f]{32}|xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}|xsmtpsib-[a-f0-9]{64}-[A-Za-z0-9]{16}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # Figma (figd_), Linear (lin_api_ + 40), Notion (ntn_ + 46; legacy secret_ + 43 base62).
        "DLP-SECRET-SAAS-TOKEN", "API_TOKEN", "secret", CRIT, 0.9,
        r"figd_[A-Za-z0-9_\-]{40,}|lin_api_[A-Za-z0-9]{40}|ntn_[A-Za-z0-9]{46}|secret_[A-Za-z0-9]{43}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # PlanetScale (pscale_tkn_/pscale_pw_/pscale_oauth_), RubyGems (rubygems_ + 48 hex), Contentful (CFPAT-).
        "DLP-SECRET-DEVTOOLS-TOKEN", "API_TOKEN", "secret", CRIT, 0.95,
        r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_\-.]{32,64}|rubygems_[a-f0-9]{48}|CFPAT-[A-Za-z0-9_\-]{43}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # Docker Hub tokens (dckr_pat_/dckr_oat_), Sentry (sntrys_ org, sntryu_ user), Dynatrace (dt0c01.).
        "DLP-SECRET-OPS-TOKEN", "API_TOKEN", "secret", CRIT, 0.95,
        r"dckr_(?:pat|oat)_[A-Za-z0-9_\-]{27,}|sntrys_eyJ[A-Za-z0-9+/=_\-]{50,}|sntryu_[a-f0-9]{64}"
        r"|dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # Model providers: Groq gsk_ + 52, xAI xai- + 80, Perplexity pplx- + 48, Replicate r8_ + 37,
        # ElevenLabs sk_ + 48 hex, Tavily tvly- + 32.
        "DLP-SECRET-AI-PROVIDER-KEY", "AI_API_KEY", "secret", CRIT, 0.95,
        r"gsk_[A-Za-z0-9]{52}|xai-[A-Za-z0-9]{80}|pplx-[A-Za-z0-9]{48}|r8_[A-Za-z0-9]{37}|sk_[a-f0-9]{48}"
        r"|tvly-(?:dev-|prod-)?[A-Za-z0-9]{32}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # Dropbox short-lived access tokens: sl. + a long base64url body (130+ characters).
        "DLP-SECRET-DROPBOX-TOKEN", "DROPBOX_TOKEN", "secret", CRIT, 0.95,
        r"sl\.[A-Za-z0-9_\-]{130,}",
        validator=v.random_token, left=TOK + ".", right=TOK,
    ),
    Detector(  # Facebook/Meta Graph access tokens: EAA + app-specific body, long (100+ alphanumerics).
        "DLP-SECRET-FACEBOOK-TOKEN", "FACEBOOK_TOKEN", "secret", CRIT, 0.9,
        r"EAA[A-Za-z0-9]{100,}",
        validator=v.random_token, left=_WORD + "+/", right=B64,
    ),
    Detector(  # Alibaba Cloud AccessKey ID (LTAI + 12-20) and Tencent Cloud SecretId (AKID + 32).
        "DLP-SECRET-CLOUD-ACCESS-KEY", "CLOUD_ACCESS_KEY", "secret", CRIT, 0.9,
        r"LTAI[A-Za-z0-9]{12,20}|AKID[A-Za-z0-9]{32}",
        validator=v.random_token, left=_WORD, right=_WORD,
    ),
    Detector(  # Heroku platform API tokens (HRKU- + 60) and 1Password service account tokens (ops_eyJ...).
        "DLP-SECRET-PLATFORM-TOKEN", "API_TOKEN", "secret", CRIT, 0.95,
        r"HRKU-[A-Za-z0-9_\-]{60}|ops_eyJ[A-Za-z0-9+/=_\-]{100,}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    Detector(  # Stripe webhook signing secrets (whsec_) and MongoDB Atlas service-account secrets (mdb_sa_sk_).
        "DLP-SECRET-SIGNING-SECRET", "API_TOKEN", "secret", CRIT, 0.9,
        r"whsec_[A-Za-z0-9+/]{32,}|mdb_sa_sk_[A-Za-z0-9_\-]{32,}",
        validator=v.random_token, left=TOK, right=TOK,
    ),
    # Discord bot tokens: base64(user id) "." base64 timestamp "." HMAC; the validator decodes the id part.
    Detector(
        "DLP-SECRET-DISCORD-BOT-TOKEN", "DISCORD_TOKEN", "secret", CRIT, 0.9,
        r"[A-Za-z0-9_\-]{23,28}\.[A-Za-z0-9_\-]{6,7}\.[A-Za-z0-9_\-]{27,40}",
        validator=v.discord_bot_token, left=TOK + ".", right=TOK + ".",
    ),
    Detector(
        "DLP-SECRET-WEBHOOK-URL", "WEBHOOK_URL", "secret", HIGH, 0.9,
        r"https://(?:discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_\-]{60,}"
        r"|(?:[a-z0-9\-]+\.webhook|outlook)\.office\.com/webhook(?:b2)?/[A-Za-z0-9@/\-]{40,})",
        validator=v.random_token,
    ),
    # Password hashes allow offline cracking: bcrypt, modular crypt MD5/SHA-256/SHA-512 ($1$/$5$/$6$), Cisco
    # type 8/9 ($8$ PBKDF2, $9$ scrypt), and Kerberos AS-REP/TGS hashes as printed by roasting tools.
    Detector(
        "DLP-SECRET-PASSWORD-HASH", "PASSWORD_HASH", "secret", HIGH, 0.9,
        r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}|\$[1-9]\$(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{22,86}"
        r"|\$krb5(?:asrep|tgs)\$\d{1,2}\$[^\s]{64,}",
    ),
    # --- secrets: context-dependent -----------------------------------------------------------------------------
    # scheme://user:password@host (RFC 3986 userinfo): database URLs, AMQP, Redis, SMTP, ...; only the password.
    Detector(
        "DLP-SECRET-URL-PASSWORD", "PASSWORD", "secret", HIGH, 0.85,
        r"\b[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:/@\"'<>]{1,128}:([^\s:/@\"'<>]{3,128})@[A-Za-z0-9.\-\[]",
        validator=v.connection_password, group=1,
    ),
    # Credentials in HTTP Authorization headers (RFC 6750 bearer tokens, Okta's SSWS scheme; RFC 7617 Basic).
    Detector(
        "DLP-SECRET-BEARER-TOKEN", "BEARER_TOKEN", "secret", CRIT, 0.85,
        r"(?i:\bbearer|\bssws):?[ \t]+([A-Za-z0-9\-._~+/]+=*)",
        validator=v.auth_header_token, group=1, right=TOK + "~+/=",
    ),
    Detector(
        "DLP-SECRET-BASIC-AUTH", "BASIC_AUTH", "secret", CRIT, 0.9,
        r"(?i:\bbasic)[ \t]+([A-Za-z0-9+/]{8,}={0,2})",
        validator=v.basic_auth, group=1, right=B64,
    ),
    # password/secret = value (JSON, YAML, INI, env, shell, CLI flag `--password X`, netrc `password X`, a hard-coded
    # comparison `password == "..."` (CWE-798), prose "the password is X"); passwords
    # are typed by people, so 8 characters suffice, but the value must look like one (see validators.generic_secret).
    Detector(
        "DLP-SECRET-GENERIC-ASSIGNMENT", "SECRET", "secret", HIGH, 0.6,
        r"(?i:[a-z0-9_.\-]*(?:password|passwd|passphrase|pwd|secret))"
        r"(?:(?:\\?[\"'\]])?[ \t]*(?::=|=>|[!=]==?|[:=])[ \t]*|[ \t]+(?i:(?:is|was)[ \t]+)?)"
        r"(?:\\?[\"'`])?"
        # The value must hold an upper-case letter or a digit (see validators.generic_secret): saying so in the
        # regex keeps `password = get_password()` and other lower-case identifiers out of the candidates entirely.
        r"([^\s\"'`,;<>()\[\]]*[A-Z0-9][^\s\"'`,;<>()\[\]]*)",
        validator=v.generic_secret, group=1, right="([",
    ),
    # *_KEY / *_TOKEN / *_PAT / api_key / auth / credentials = value, also `x-api-key: value`, `SECRET key value`: the
    # value must look machine-generated (>= 16 characters, letters and digits, entropy; validators.generic_key).
    Detector(
        "DLP-SECRET-GENERIC-KEY", "SECRET", "secret", HIGH, 0.55,
        r"(?i:[a-z0-9_.\-]*(?:key|token|auth|credentials?|[_.\-]pat)|(?:secret|access|private|api)[ \t]+key)"
        r"(?:(?:\\?[\"'\]])?[ \t]*(?::=|=>|[:=])[ \t]*|[ \t]+)"
        r"(?:\\?[\"'`])?"
        r"([A-Za-z0-9+/=_.~\-]*[0-9][A-Za-z0-9+/=_.~\-]*)",
        validator=v.generic_key, group=1, right="(",
    ),
)
# fmt: on
