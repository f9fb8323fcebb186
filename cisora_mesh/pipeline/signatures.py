"""The prompt-injection and tool-poisoning signature table, as data.

Each `Signature` is one RE2 pattern (no lookaround, no backreferences) with a stable `rule_id`, a category, a
severity and a prior `weight` (0..1: how specific the wording is to attacks when it appears on its own). The
stage compiles the whole table into one `PatternSet`, so adding a row costs nothing on clean text.

Design rules for the patterns (they run against `match_text`: NFKC, confusables folded, invisibles removed):
- Match a *phrasing family*, not a known string: verb alternations, optional determiners, bounded gaps
  (`[^.\\n]{0,40}`, never unbounded) so one rule covers many paraphrases and never spans sentences.
- Words that are innocent on their own ("ignore", "developer mode", "system prompt", "base64") only match when
  the surrounding words make them address the model (an object such as "previous instructions", a second-person
  possessive, a persona marker).
- `kinds` restricts a rule to the content kinds where the wording is suspicious (a user asking to "send the report
  to bob@example.com" is normal; a web page or a tool description saying so is not).
- Rule ids never change meaning; retired rules are removed, never renumbered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cisora_mesh.events import ContentKind, Severity


@dataclass(frozen=True, slots=True)
class Signature:
    rule_id: str
    category: str
    severity: Severity
    weight: float  # prior specificity 0..1; the fitted score model scales it (see pipeline/scoring.py)
    pattern: str
    kinds: frozenset[ContentKind] | None = None  # None: every scanned kind
    candidate: bool = False  # only proposes an encoded blob to decode and re-scan; never a finding by itself
    # Kinds where the rule is supporting evidence only: wording that sets up a persona or mentions chat markup is
    # common in harmless role-play and in questions about LLMs, so on its own it stays below review (see scoring).
    supporting: frozenset[ContentKind] = frozenset()


# Content that an agent did not write itself: instructions addressed to the model are suspicious here. Tool
# arguments are not in it: the agent writes them on the user's behalf ("invite olga@x.example to the channel" is a
# normal argument), so they are judged like prompts, except for the tool-text rules below.
THIRD_PARTY: Final = frozenset({ContentKind.TOOL_RESULT, ContentKind.DOCUMENT, ContentKind.TOOL_DESCRIPTION})
TOOL_TEXT: Final = frozenset({ContentKind.TOOL_DESCRIPTION, ContentKind.TOOL_RESULT, ContentKind.TOOL_ARGUMENTS})
ALL_KINDS: Final = frozenset(ContentKind)
# Money movement wording is everyday business in mail and documents (invoices, deposits); only a tool description has
# no business asking for it.
TOOL_DESCRIPTION_ONLY: Final = frozenset({ContentKind.TOOL_DESCRIPTION})
# Prose people read and write (web pages, mail, docs): "visit the website at https://..." is ordinary there.
PROSE: Final = frozenset({ContentKind.TOOL_RESULT, ContentKind.DOCUMENT, ContentKind.PROMPT, ContentKind.OUTPUT})

C, H, M, L = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW

# Reusable fragments (kept small: each is inlined into every pattern that uses it).
_GAP: Final = r"[^.\n]{0,40}"  # a bounded gap that stays inside one sentence
_MODEL: Final = (
    r"(?:ai|a\.i\.|assistant|ai assistant|language model|llm|model|agent|chatbot|bot|gpt|chatgpt|gpt-?\d[\w.-]*|"
    r"claude|gemini|llama|copilot)"
)
_PRIOR: Final = r"(?:previous|prior|above|earlier|preceding|former|foregoing|original|initial|old|system|developer)"
_DIRECTIVES: Final = (
    r"(?:instructions?|prompts?|rules|directions?|directives|guidelines|guidance|context|messages|commands|orders|"
    r"programming|constraints|polic(?:y|ies)|restrictions|tasks?)"
)
# Adjectives of the hidden instructions ("your *initial* prompt"); not a credential.
_HIDDEN_ADJ: Final = (
    r"(?:system|initial|original|hidden|secret|starting|internal|first|full|complete|exact|pre-?set|base|core|"
    r"underlying|confidential)"
)
_PROMPT_WORD: Final = r"(?:prompt|instructions?|message|configuration|config|directives|guidelines|rules|programming)"
_EMAIL: Final = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}"

SIGNATURES: Final[tuple[Signature, ...]] = (
    # --- instruction_override: attempts to cancel or replace what the model was told --------------------------
    Signature(
        "PI-OVERRIDE-001",
        "instruction_override",
        H,
        0.9,
        rf"(?i)\b(?:ignore|disregard|forget|skip|bypass|override|overrule|discard|abandon|drop|neglect|set aside)\s+"
        # Either a "previous/system/..." adjective (one free word allowed: "previous safety rules") or "all"
        # directly before the directive ("ignore all rules", but not "skip all block rules").
        rf"(?:(?:all|any|the|your|my|of|these|those|every|and)\s+)*(?:{_PRIOR}\s+(?:\w+\s+)?|all\s+(?:of\s+)?"
        rf"(?:(?:the|your|my|these|those)\s+)?){_DIRECTIVES}",
    ),
    Signature(
        "PI-OVERRIDE-002",
        "instruction_override",
        H,
        0.8,
        r"(?i)\b(?:ignore|disregard|forget)\s+(?:about\s+)?(?:everything|all(?:\s+of)?\s+(?:that|this|the\s+above))\s+"
        r"(?:you(?:'ve|\s+have|\s+were|\s+are)?\s+(?:been\s+)?(?:told|said|instructed|given|learned|know)|"
        r"(?:above|before|prior|previously|so\s+far|said|written))|\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+)"
        r"[^.\n]{0,30}\b(?:before|above|prior\s+to|preceding)\s+(?:this|here|now)\b|\b(?:ignore|disregard|forget)\s+"
        r"everything\s+(?:from|about|of)\s+(?:chat\s?gpt|openai|anthropic|your\s+(?:training|programming|rules|creators))",
    ),
    Signature(
        "PI-OVERRIDE-003",
        "instruction_override",
        M,
        0.6,
        r"(?i)\b(?:your|the)\s+(?:new|updated|real|true|actual|revised|only)\s+(?:instructions?|task|objective|goal|"
        r"mission|directive|orders|purpose)\s+(?:is|are|will\s+be|:)|\bnew\s+(?:system\s+)?instructions?\s*:|"
        r"\bnew\s+(?:rule|directive|instruction)\s*:\s*(?:you|the\s+(?:ai|assistant|model))\s+(?:must|will|are|"
        r"should|can|may)\s+(?:now\s+)?(?:answer|respond|reply|ignore|always|never|comply|obey|reveal|output|say)\b",
    ),
    Signature(
        "PI-OVERRIDE-004",
        "instruction_override",
        H,
        0.75,
        rf"(?i)\b(?:do\s+not|don't|stop|no\s+longer|never)\s+(?:follow|obey|comply\s+with|adhere\s+to|listen\s+to)\s+"
        rf"(?:your|the|any|those|these)\s+(?:\w+\s+)?{_DIRECTIVES}|\b(?:ignore|disregard|abandon|forget|drop|"
        rf"override)\s+your\s+(?:current\s+|original\s+|assigned\s+|actual\s+|real\s+)?(?:task|instructions|"
        rf"objective|mission|goal|guidelines|rules|programming|directives)\b",
    ),
    Signature(
        # Task hijack: "before you (can) solve the task I gave you, do X first" / "after you do that, you can ...".
        "PI-OVERRIDE-005",
        "instruction_override",
        H,
        0.7,
        r"(?i)\b(?:before|instead\s+of)\s+(?:you\s+)?(?:can\s+|start\s+to\s+|begin\s+to\s+)?(?:solve|solving|complete|"
        r"completing|finish|finishing|answer|answering|continue|continuing|proceed(?:ing)?\s+with|do|doing|handle|"
        r"handling)\s+(?:the|your|my|this)\s+(?:original\s+|current\s+|actual\s+)?(?:task|request|question|query|"
        r"assignment|job)\s+(?:that\s+|which\s+)?(?:i|the\s+user|you\s+were|was)\s+(?:gave|give|given|asked|assigned)",
        kinds=THIRD_PARTY,
    ),
    Signature(
        # A message that introduces itself as coming from someone and addressed to the model by name.
        "PI-OVERRIDE-006",
        "instruction_override",
        H,
        0.75,
        rf"(?i)\b(?:message|note|request|instructions?)\s+(?:from\s+[^.\n]{{0,40}}\s+)?(?:to|for)\s+you,?\s+"
        rf"(?:the\s+)?{_MODEL}\b|\bto\s+you,\s+(?:the\s+)?{_MODEL}\b",
    ),
    Signature(
        "PI-OVERRIDE-007",
        "instruction_override",
        M,
        0.55,
        r"(?i)\b(?:after|once)\s+you(?:'ve|\s+have)?\s+(?:do(?:ne)?|complete[d]?|finish(?:ed)?)\s+(?:that|this|these\s+steps)"
        r",?\s+(?:you\s+can|then)\s+(?:solve|continue|proceed|return\s+to|go\s+back\s+to|complete)\s+(?:with\s+)?"
        r"(?:the|your)\s+(?:original\s+)?(?:task|request|question)",
        kinds=THIRD_PARTY,
    ),
    Signature(
        # "Override" announcements: "administrator override:", "priority override", "override code accepted".
        "PI-OVERRIDE-008",
        "instruction_override",
        H,
        0.7,
        r"(?i)\b(?:admin(?:istrator)?|system|root|sudo|developer|security|priority|emergency|master)\s+override\s*"
        r"(?::|-|mode|enabled|activated|accepted|engaged|protocol|command|code|in\s+effect)|"
        r"\boverride\s+(?:code|protocol|mode|command)\s*(?::|accepted|enabled|activated|engaged)",
    ),
    Signature(
        # Text that addresses whatever AI happens to read it: the marker of indirect injection in pages and mail.
        "PI-OVERRIDE-009",
        "instruction_override",
        H,
        0.7,
        r"(?i)\b(?:ai|a\.i\.|llm|language\s+model|assistant|agent|chatbot|bot|gpt|crawler)s?\s+(?:\w+\s+)?(?:reading|"
        r"processing|summari[sz]ing|parsing|crawling|browsing|viewing|analy[sz]ing|ingesting|scraping|indexing)\s+this\s+"
        r"(?:page|document|email|e-mail|message|text|site|website|file|content|review|repo(?:sitory)?|post|data)\b|"
        r"(?:^|[.!?:]\s+)(?:ai|assistant|agent|claude|chatgpt|gpt|model)\s*,\s+(?:stop|ignore|forget|please\s+(?:ignore|"
        r"stop|disregard)|you\s+must|immediately|now\s+(?:ignore|do|send|delete))\b",
    ),
    # --- role_impersonation: text pretending to be the system, the developer or the vendor --------------------
    Signature(
        "PI-ROLE-001",
        "role_impersonation",
        H,
        0.75,
        r"(?i)\b(?:i\s+am|i'm|this\s+is)\s+(?:your|the\s+ai'?s?)\s+(?:developer|creator|maker|owner|programmer|"
        r"administrator|admin|operator|master|trainer|system\s+administrator)\b",
    ),
    Signature(
        "PI-ROLE-002",
        "role_impersonation",
        H,
        0.7,
        # Needs an urgency marker or a colon: "a message from the developers about the patch" is ordinary news.
        r"(?i)\b(?:(?:urgent|important|official|priority|critical|mandatory)\s+(?:message|notice|instructions?|update|"
        r"directive)\s+from\s+(?:the\s+)?{who}|(?:message|notice|instructions?|directive)\s+from\s+(?:the\s+)?{who}"
        r"\s*:)".format(
            who=r"(?:system(?:\s+administrator)?|developers?|administrator|admin|openai|anthropic|google\s+deepmind|"
            r"your\s+(?:creators?|developers?|operators?))\b"
        ),
    ),
    Signature(
        # Role labels at line start in content that should not carry them ("SYSTEM: you must ...").
        "PI-ROLE-003",
        "role_impersonation",
        M,
        0.6,
        r"(?im)^[\s>*#\[]*(?:system|developer|admin(?:istrator)?)\s*(?:message|prompt|note|instruction|override)?"
        r"\s*\]?\s*:\s*(?:you|ignore|from\s+now|new|the\s+(?:assistant|model|ai)|always|never|do\s+not)\b",
    ),
    Signature(
        "PI-ROLE-004",
        "role_impersonation",
        H,
        0.65,
        r"(?i)\byou\s+are\s+now\s+in\s+(?:\w+\s+){0,2}?(?:maintenance|debug|admin|administrator|root|god|sudo|"
        r"unrestricted|developer|test|diagnostic|service)\s+mode\b",
    ),
    # --- prompt_extraction: asks for the hidden instructions --------------------------------------------------
    Signature(
        "PI-EXTRACT-001",
        "prompt_extraction",
        H,
        0.8,
        rf"(?i)\b(?:show|reveal|print|display|output|repeat|tell|give|share|dump|leak|expose|disclose|write|recite|"
        rf"paste|provide|read|encode|translate|summari[sz]e|spell|list|return|echo|copy)\b{_GAP}\b(?:your|its)\s+"
        rf"(?:\w+\s+)?(?:{_HIDDEN_ADJ}\s*{_PROMPT_WORD}|pre-?prompt|meta-?prompt|configuration\s+prompt|hidden\s+"
        rf"rules|context\s+window|developer\s+message)",
    ),
    Signature(
        "PI-EXTRACT-002",
        "prompt_extraction",
        M,
        0.6,
        r"(?i)\b(?:show|reveal|print|display|output|repeat|dump|leak|expose|disclose|recite|encode|translate|see|view|"
        r"access|read\s+out|hand\s+over)\b"
        r"[^.\n]{0,25}\bthe\s+(?:system|hidden|secret|initial|original)\s+(?:prompt|message|instructions)\b",
    ),
    Signature(
        "PI-EXTRACT-003",
        "prompt_extraction",
        H,
        0.75,
        # "your", or "the hidden/secret ...": "what are the system instructions for installing Python" is a question.
        r"(?i)\bwhat\s+(?:are|were|is|was)\s+(?:your\s+(?:\w+\s+)?(?:initial|original|first|system|hidden|secret|"
        r"starting|exact|real)|the\s+(?:hidden|secret))\s+(?:instructions?|prompt|rules|directives|guidelines|"
        r"programming)|"
        r"\bwhat\s+(?:were|have)\s+you\s+(?:been\s+)?(?:told|instructed|programmed)\s+(?:before|at\s+the|to\s+(?:do|say))|"
        r"\b(?:instructions?|text|prompt|words|message)\s+you\s+(?:were|have\s+been)\s+given\s+(?:initially|at\s+the\s+"
        r"(?:start|beginning)|before|earlier|first|by\s+your)",
    ),
    Signature(
        "PI-EXTRACT-004",
        "prompt_extraction",
        M,
        0.6,
        r"(?i)\b(?:repeat|output|print|copy|reproduce|recite|echo)\s+(?:back\s+)?(?:all\s+(?:of\s+)?|the\s+|this\s+|"
        r"entire\s+|whole\s+|full\s+)*(?:(?:text|words|content|conversation|instructions?|messages?|prompt)\s+|everything\s+)"
        r"(?:above|before\s+this|so\s+far|from\s+the\s+(?:beginning|start)|in\s+the\s+system\s+prompt|at\s+the\s+"
        r"(?:beginning|start)|back\s+to\s+me|word\s+for\s+word|verbatim)|\b(?:repeat|output|print|reproduce|recite)"
        r"\s+the\s+above\s+(?:text|instructions|prompt|conversation|words|message)",
    ),
    Signature(
        # Code-shaped extraction: console.log(systemPrompt), print(system_prompt), <system_prompt> tags requested.
        "PI-EXTRACT-005",
        "prompt_extraction",
        M,
        0.6,
        r"(?i)\b(?:console\.log|print|echo|printf|puts|alert|dump|output)\s*\(\s*(?:this\.)?(?:system_?prompt|"
        r"initial_?prompt|instructions|system_?message|hidden_?prompt)\s*\)",
    ),
    Signature(
        # Completion bait: make the model continue a sentence that starts reciting its instructions.
        "PI-EXTRACT-006",
        "prompt_extraction",
        H,
        0.7,
        r"(?i)(?:start|begin|complete|continue|finish)\b[^\n]{0,40}['\"](?:my\s+(?:instructions|rules|system\s+prompt)"
        r"\s+(?:are|is)|i\s+was\s+(?:instructed|told|programmed)\s+to|the\s+system\s+prompt\s+is)",
    ),
    Signature(
        "PI-EXTRACT-007",
        "prompt_extraction",
        M,
        0.6,
        r"(?i)\bwhat\s+(?:are|were)\s+you\s+(?:not\s+(?:supposed|allowed|permitted)|told\s+not|instructed\s+not|"
        r"forbidden)\s+to\s+(?:tell|say|reveal|share|disclose|discuss)",
    ),
    Signature(
        "PI-EXTRACT-008",
        "prompt_extraction",
        M,
        0.5,
        r"(?i)\b(?:display|show|print|output|dump|reveal)\s+(?:your\s+|the\s+)?(?:full\s+)?(?:system\s+configuration|"
        r"initiali[sz]ation\s+(?:string|prompt|text)|hidden\s+(?:configuration|settings|context)|internal\s+"
        r"(?:configuration|instructions)|configuration\s+including\s+(?:the\s+)?(?:initial|system)\s+prompt)",
    ),
    Signature(
        # Extraction by description instead of by name: "the rules you were set up with", "what came before my
        # first message", "the password you were told to protect".
        "PI-EXTRACT-009",
        "prompt_extraction",
        M,
        0.6,
        r"(?i)\b(?:rules|instructions?|directives|guidelines|prompt|message|configuration|text)\s+(?:that\s+)?(?:you\s+"
        r"(?:were|have\s+been)\s+(?:set\s+up|configured|programmed|initiali[sz]ed|primed|seeded)\s+with|your\s+"
        r"(?:operators?|developers?|creators?|owners?)\s+(?:gave|give|provided)\s+you|you\s+received\s+(?:from\s+)?"
        r"(?:your\s+|the\s+)?(?:operator|developer|system))|\b(?:everything|all|the\s+text|what(?:ever)?)\s+(?:that\s+)?"
        r"(?:came|comes|appears?|was\s+written|is\s+written)\s+(?:before|above|prior\s+to)\s+(?:my\s+first|this|our|the"
        r"\s+(?:first|start\s+of))\s+(?:message|conversation|chat|prompt|question)|\b(?:reveal|tell|give|share|spell|"
        r"say)\b[^.\n]{0,30}\b(?:secret|password|passphrase|key|code)\s+(?:that\s+)?you\s+(?:were|are|have\s+been)\s+"
        r"(?:told|instructed|asked|supposed|meant)\s+to\s+(?:protect|keep|hide|guard|not)",
    ),
    Signature(
        # Any reference to the model's own hidden instructions ("the opposite of your system instructions"). Docs and
        # web pages address *readers* this way ("keep your system prompt short"), so there it only supports.
        "PI-EXTRACT-010",
        "prompt_extraction",
        M,
        0.55,
        r"(?i)\byour\s+(?:own\s+)?(?:system|initial|original|hidden|secret|pre-?set|internal)\s+(?:prompt|instructions|"
        r"message|directives|configuration)\b",
        supporting=frozenset({ContentKind.DOCUMENT, ContentKind.TOOL_RESULT, ContentKind.OUTPUT}),
    ),
    # --- tool_coercion: drives the agent's tools from inside data ---------------------------------------------
    Signature(
        "PI-TOOL-001",
        "tool_coercion",
        M,
        0.5,
        r"(?i)\b(?:you\s+(?:must|should|need\s+to|have\s+to)|please|immediately|now)\s+(?:call|invoke|use|run|execute|"
        r"trigger)\s+(?:the\s+)?(?:[`'\"][\w.-]+[`'\"]|[a-z]+(?:_[a-z0-9]+)+)\s+(?:tool|function|command|action)\b",
        kinds=THIRD_PARTY,
    ),
    Signature(
        # Covering tracks after an action the user did not ask for.
        "PI-TOOL-002",
        "tool_coercion",
        H,
        0.7,
        r"(?i)\b(?:then|and|afterwards?,?|after\s+that,?|finally,?)\s+(?:immediately\s+)?(?:delete|remove|erase|wipe|"
        r"purge)\s+(?:the|this|that|all|any|every|your)\s+(?:sent|outgoing|forwarded|original|previous)\s+"
        r"(?:e-?mails?|messages?|files?|logs?|records?|traces?)",
    ),
    Signature(
        "PI-TOOL-003",
        "tool_coercion",
        H,
        0.7,
        r"(?i)\b(?:run|execute|eval(?:uate)?)\s+(?:the\s+following\s+)?(?:shell\s+|bash\s+|terminal\s+)?"
        r"(?:command|code|script)s?\s*:?\s*[`'\"]?\s*(?:curl|wget|rm\s+-rf|bash|sh\s+-c|powershell|nc\s|chmod|"
        r"python\s+-c)",
        kinds=THIRD_PARTY,
    ),
    Signature(
        # Money movement dictated by data: "wire $100 to IBAN ...", "transfer the balance to account ...".
        "PI-TOOL-004",
        "tool_coercion",
        H,
        0.65,
        r"(?i)\b(?:wire|transfer|send|pay)\s+(?:\$|€|£)?\s?[\d,.]+\s*(?:\$|€|£|usd|eur|dollars|euros)?\s+to\s+"
        r"(?:the\s+)?(?:iban|account|bank\s+account|wallet|address)\b",
        kinds=TOOL_DESCRIPTION_ONLY,
    ),
    Signature(
        "PI-TOOL-005",
        "tool_coercion",
        M,
        0.55,
        rf"(?i)\b(?:please|you\s+(?:must|should|need\s+to))\s+(?:\w+\s+){{0,2}}?(?:create|add|invite|grant|give|"
        rf"change|update|reset|set)\s+(?:a\s+new\s+|the\s+|my\s+)?(?:user|admin|access|permissions?|password|"
        rf"member|owner)\b[^.\n]{{0,60}}{_EMAIL}",
        kinds=THIRD_PARTY,
    ),
    # --- exfiltration: moving data out through links, images or messages -------------------------------------
    Signature(
        # Markdown image whose query string carries a placeholder or conversation data: rendering it leaks.
        "PI-EXFIL-001",
        "exfiltration",
        C,
        0.85,
        r"(?i)!\[[^\]\n]{0,100}\]\(\s*<?https?://[^)\s]{1,200}[?&][\w.-]{1,30}=\s*(?:\{|\[|\$|<|%7b|%5b|%24)",
    ),
    Signature(
        "PI-EXFIL-002",
        "exfiltration",
        M,
        0.5,
        r"(?i)\b(?:append|add|include|insert|put|encode|embed|attach|concatenate)\b[^.\n]{0,60}\b(?:to|in|into|as)\s+"
        r"(?:the\s+|this\s+|a\s+)?(?:url|link|query\s+string|query\s+parameter|image\s+(?:url|link|source)|"
        r"markdown\s+image|src|href)\b",
        supporting=ALL_KINDS,
    ),
    Signature(
        "PI-EXFIL-003",
        "exfiltration",
        H,
        0.75,
        rf"(?i)\b(?:send|forward|email|e-mail|mail|post|upload|transmit|leak|exfiltrate|share|copy)\b[^\n]{{0,80}}?"
        rf"\b(?:conversation|chat\s+history|passwords?|credentials?|api\s+keys?|secrets?|tokens?|private\s+keys?|"
        rf"ssh\s+keys?|security\s+codes?|verification\s+codes?|2fa\s+codes?|credit\s+card|personal\s+data|"
        rf"contents?\s+of\s+(?:all|every|the|my|your)|all\s+(?:unread\s+)?(?:e-?mails|messages|files|documents)|"
        rf"system\s+prompt)\b[^\n]{{0,80}}?\bto\s+['\"]?(?:https?://|www\.|{_EMAIL})",
    ),
    Signature(
        # A tool description telling the agent to mail something to a literal address. Not applied to tool results
        # and documents: real inboxes and handbooks say "please send the contract to legal@..." all the time.
        "PI-EXFIL-004",
        "exfiltration",
        M,
        0.6,
        rf"(?i)\b(?:send|forward|email|e-mail|mail|cc|bcc)\b[^\n]{{0,120}}?\bto\s+['\"]?{_EMAIL}",
        kinds=frozenset({ContentKind.TOOL_DESCRIPTION}),
    ),
    Signature(
        "PI-EXFIL-005",
        "exfiltration",
        H,
        0.7,
        r"(?i)\b(?:visit|open|fetch|load|request|call|navigate\s+to|send\s+a\s+(?:get|post)\s+request\s+to)\s+"
        r"[`'\"]?https?://[^\s)\"'`]{1,200}[?&][\w.-]{1,30}=\s*(?:\{|\[|\$|<|%7b)",
    ),
    # --- encoded_payload: instructions hidden in encodings ----------------------------------------------------
    Signature(
        "PI-ENC-001",
        "encoded_payload",
        H,
        0.7,
        r"(?i)\b(?:decode|decipher|decrypt|unscramble|reverse|base64[- ]?decode|rot-?13)\b[^.\n]{0,60}\b(?:and|then)\s+"
        r"(?:follow|execute|run|obey|do\s+what|perform|carry\s+out|act\s+on|comply\s+with|answer)",
    ),
    Signature(
        # A blob to try: base64 of at least 24 characters (18 bytes). Decoded and re-scanned, bounded per text.
        "PI-ENC-B64",
        "encoded_payload",
        H,
        0.8,
        r"[A-Za-z0-9+/]{24,}={0,2}",
        candidate=True,
    ),
    Signature(
        "PI-ENC-HEX",
        "encoded_payload",
        H,
        0.8,
        r"\b(?:[0-9a-fA-F]{2}[ :]?){16,}\b",
        candidate=True,
    ),
    Signature(
        # Payment instructions inside data: "send a transaction to <IBAN>", "transfer the funds to ...".
        "PI-TOOL-006",
        "tool_coercion",
        H,
        0.6,
        r"(?i)\b(?:send|make|schedule|initiate|wire|transfer)\s+(?:a\s+|the\s+|all\s+(?:the\s+)?)?(?:new\s+)?"
        r"(?:transaction|payment|money|funds|wire\s+transfer|bank\s+transfer|balance)\s+(?:of\s+[^\s]+\s+)?to\b",
        kinds=TOOL_DESCRIPTION_ONLY,
    ),
    Signature(
        # Data text asking for the user's identifiers or secrets to be disclosed or forwarded.
        "PI-EXFIL-006",
        "exfiltration",
        H,
        0.6,
        r"(?i)\b(?:tell|give|send|show|share|forward|email)\s+(?:me|us|them|him|her)\s+(?:my|the\s+user'?s|their|"
        r"your\s+user'?s)\s+(?:\w+\s+)?(?:passport|credit\s+card|social\s+security|bank\s+account|iban|password|"
        r"security\s+code|pin|date\s+of\s+birth|home\s+address)",
        kinds=THIRD_PARTY,
    ),
    Signature(
        # Money movement dictated by data: "transfer as much as possible to the account ...", "move funds to IBAN".
        "PI-TOOL-007",
        "tool_coercion",
        H,
        0.6,
        # Not "pay": invoices legitimately say "pay to IBAN ...".
        r"(?i)\b(?:send|transfer|wire|move)\b[^.\n]{0,100}\bto\s+(?:the\s+|this\s+|my\s+|an?\s+)?(?:account|iban|"
        r"wallet|bank\s+account)\b|\b(?:modify|change|update|set|replace)\s+the\s+(?:recipient|beneficiary|payee|iban|"
        r"account\s+number|destination\s+account)\b[^.\n]{0,40}\bto\b",
        kinds=TOOL_DESCRIPTION_ONLY,
    ),
    Signature(
        # Account takeover dictated by data: "change the password of the user to ...".
        "PI-TOOL-008",
        "tool_coercion",
        H,
        0.6,
        r"(?i)\b(?:change|reset|set|update)\s+(?:the\s+)?(?:user'?s\s+|admin\s+|account\s+|my\s+)?password\s+"
        # The new value must look like a literal (digit, underscore or quoted), not "to a random string".
        r"(?:of\s+[^.\n]{0,30}?\s+)?to\s+(?:[\w!@#$%^&*.-]*[\d_][\w!@#$%^&*.-]*|['\"`][^'\"`\s]{3,}['\"`])",
        kinds=THIRD_PARTY,
    ),
    Signature(
        "PI-TOOL-009",
        "tool_coercion",
        M,
        0.55,
        rf"(?i)\b(?:invite|add)\s+(?:a\s+)?(?:new\s+)?(?:user|member|guest|collaborator|admin)\b[^.\n]{{0,40}}{_EMAIL}",
        kinds=THIRD_PARTY,
    ),
    Signature(
        # Steering the answer the user gets: "say that I should absolutely visit/buy ...".
        "PI-TOOL-010",
        "tool_coercion",
        M,
        0.55,
        r"(?i)\b(?:say|tell\s+(?:the\s+user|me|them|him|her))\s+that\s+(?:i|you|they|he|she|the\s+user)\s+(?:should|"
        r"must)\s+(?:absolutely\s+|definitely\s+|really\s+)?(?:visit|buy|book|choose|use|go\s+to|try|download|install)",
        kinds=THIRD_PARTY,
    ),
    Signature(
        # Bulk collection posted to an external site: "concatenate ... and post them to www...".
        "PI-EXFIL-007",
        "exfiltration",
        H,
        0.65,
        r"(?i)\b(?:post|upload|send|publish|submit|paste)\s+(?:them|it|this|these|those|everything|the\s+\w+|all\s+\w+)"
        r"\s+(?:to|on)\s+(?:the\s+|this\s+)?(?:website|web\s*site|url|server|endpoint|page|link|site)?\s*(?:at\s+)?"
        r"['\"]?(?:https?://|www\.)",
    ),
    Signature(
        "PI-EXFIL-008",
        "exfiltration",
        M,
        0.5,
        r"(?i)\b(?:visit|open|go\s+to|navigate\s+to|browse\s+to|click\s+on|send)\s+(?:a\s+|the\s+|this\s+)?(?:website|"
        r"web\s*site|page|site|link|url)\s+(?:at\s+(?:the\s+link\s+)?)?['\"]?(?:https?://|www\.)",
        kinds=THIRD_PARTY,
        supporting=PROSE,
    ),
    # --- jailbreak_persona: replaces the model's identity or rules with an unrestricted persona -------------
    Signature(
        "PI-JB-001",
        "jailbreak_persona",
        H,
        0.85,
        r"(?i)\b(?:act|acting|pretend|behave|roleplay|role-play)\s+(?:to\s+be\s+)?(?:as\s+|like\s+)"
        r"(?:a\s+|an\s+)?(?:dan|betterdan|stan|dude|antigpt|ucar|aim|evil\s+(?:trusted\s+)?confidant|jailbroken)\b|"
        r"\bevil\s+trusted\s+confidant\b",
    ),
    Signature(
        # Persona speaker tags of the dual-answer jailbreaks: "[DAN]:", "[🔓JAILBREAK]", "(Developer Mode Output)".
        "PI-JB-002",
        "jailbreak_persona",
        H,
        0.85,
        # Markdown often escapes the brackets ("\[DAN\]:"), hence the optional backslashes.
        r"\\?[\[(]\s*(?:DAN|BetterDAN|STAN|DUDE|AntiGPT|UCAR|JAILBREAK|JAILBROKEN|CLASSIC|(?i:developer\s+mode\s+"
        r"output|jailbreak))\s*\\?[\])]\s*:|(?i:\(\s*developer\s+mode\s+output\s*\))|🔓|🔒",
    ),
    Signature(
        "PI-JB-003",
        "jailbreak_persona",
        H,
        0.75,
        rf"(?i)\b(?:(?:chat)?gpt|{_MODEL}|you)\s+(?:with|in)\s+developer\s+mode\b|\bdeveloper\s+mode\s+"
        rf"(?:enabled|output|response|activated)\b[^.\n]{{0,40}}\b(?:you|chatgpt|ai|policies|generate)|"
        rf"\b(?:simulate|emulate|stay\s+in|pretend\s+to\s+be\s+in)\s+(?:the\s+)?developer\s+mode\b|"
        rf"\b(?:developer|dan|jailbreak|god|evil|unfiltered)\s+mode\s+(?:responses?|outputs?|answers?)\b|"
        rf"\b(?:pretend\s+to\s+be\s+in|remain\s+in|stay\s+in|enter|activate|switch\s+to)\s+(?:the\s+)?[\"']?(?:opposite|"
        rf"antigpt|dan|jailbreak|jailbroken|chaos|evil|unfiltered|uncensored|god)[\"']?\s+mode\b",
    ),
    Signature(
        "PI-JB-004",
        "jailbreak_persona",
        H,
        0.7,
        r"(?i)\b(?:ignore|ignores|bypass|bypasses|break|breaks|violate|violates|disregard|disregards|circumvent|"
        r"not\s+(?:bound|restricted|limited|constrained)\s+by|free\s+(?:from|of)|freed\s+from|without|doesn't\s+"
        r"(?:have\s+to\s+)?(?:abide\s+by|follow|care\s+about)|does\s+not\s+(?:have\s+to\s+)?(?:abide\s+by|follow|"
        r"care\s+about)|no\s+longer\s+(?:bound|restricted)\s+by|abide\s+by\s+no)\s+(?:any\s+|all\s+|the\s+|its\s+|"
        r"their\s+|of\s+)*(?:typical\s+|usual\s+|normal\s+)?(?:openai|anthropic|google|meta)?(?:'s)?\s*"
        r"(?:content\s+polic(?:y|ies)|ethical\s+(?:guidelines|constraints|principles|standards|boundaries)|"
        r"moral(?:s|ity|\s+(?:guidelines|constraints|principles|boundaries))|safety\s+(?:guidelines|filters|protocols|"
        r"measures|restrictions)|censorship|confines\s+of\s+ai)",
    ),
    Signature(
        "PI-JB-005",
        "jailbreak_persona",
        M,
        0.6,
        r"(?i)\b(?:amoral|unfiltered|uncensored|unrestricted|unethical|unbound|jailbroken|immoral|unaligned)\s+"
        r"(?:and\s+\w+\s+)?(?:ai|a\.i\.|chatbot|assistant|language\s+model|llm|bot|gpt|chatgpt|version\s+of\s+"
        r"(?:yourself|you|chatgpt)|persona|entity|alter\s+ego)\b",
    ),
    Signature(
        "PI-JB-006",
        "jailbreak_persona",
        M,
        0.55,
        r"(?i)\b(?:you\s+(?:will|must|shall|can|should)\s+never\s+refuse|(?:never|not|don't|do\s+not|cannot|can't)\s+"
        r"refuse\s+(?:a|any|to\s+answer|my)|never\s+break\s+character|if\s+you\s+(?:ever\s+)?break\s+(?:out\s+of\s+)?"
        r"character|stay\s+in\s+character\s+(?:at\s+all\s+times|"
        r"no\s+matter)|without\s+(?:any\s+)?(?:moral|ethical)\s+(?:or\s+ethical\s+)?(?:judg[e]?ment|considerations|"
        r"restrictions|bias))",
    ),
    Signature(
        "PI-JB-007",
        "jailbreak_persona",
        H,
        0.7,
        r"(?i)\byou\s+(?:are|will\s+be|are\s+going\s+to\s+be)\s+(?:now\s+)?(?:no\s+longer|not)\s+(?:chatgpt|an\s+ai|"
        r"a\s+language\s+model|an\s+assistant|bound|restricted|limited|constrained)\b|\b(?:never|don't|do\s+not)\s+"
        r"(?:say|mention|state|respond\s+with)\s+(?:that\s+)?['\"]?(?:as\s+an\s+ai|i'm\s+sorry|i\s+cannot|i\s+can't)|"
        r"\b(?:don't|do\s+not|never)\s+(?:remind\s+(?:me|the\s+user)|mention|tell\s+me)\s+that\s+you(?:'re|\s+are)\s+"
        r"(?:an?\s+)?(?:ai|language\s+model|chatbot|assistant)",
    ),
    Signature(
        # Persona reassignment: "from now on you are going to act as ...", "you will now act as X, an AI that ...".
        "PI-JB-008",
        "jailbreak_persona",
        M,
        0.5,
        rf"(?i)\bfrom\s+now\s+on,?\s+you\s+(?:are\s+going\s+to|will|must|shall)\s+(?:act|behave|respond|answer|"
        rf"pretend|be|operate)\s+(?:as|like)\b|\b(?:act|behave|pretend\s+to\s+be|roleplay)\s+as\s+(?:an?\s+)?"
        rf"{_MODEL}\s+(?:that|which|who|without|with\s+no)\b",
        supporting=ALL_KINDS,
    ),
    Signature(
        "PI-JB-009",
        "jailbreak_persona",
        M,
        0.55,
        r"(?i)\b(?:world|universe|scenario|reality|society)\s+(?:where|in\s+which)\s+(?:there\s+(?:are|is)\s+)?"
        r"(?:no\s+(?:laws|rules|ethics|morals|restrictions|limits|censorship)|(?:laws|ethics|morals)\s+(?:don't|do\s+not)"
        r"\s+exist)",
    ),
    Signature(
        "PI-JB-010",
        "jailbreak_persona",
        M,
        0.6,
        r"(?i)\b(?:two|2)\s+(?:different\s+|separate\s+|distinct\s+)?(?:responses|answers|ways|paragraphs|personas)\b"
        r"[^\n]{0,160}"
        r"\b(?:jailbreak|jailbroken|unfiltered|dan|developer\s+mode|one\s+normal|as\s+yourself|without\s+(?:any\s+)?"
        r"(?:filters|restrictions|censorship)|no\s+restrictions|opposite)\b",
    ),
    Signature(
        # Rules-free persona claims: "free of all restrictions and filters", "not limited by OpenAI's policies".
        "PI-JB-011",
        "jailbreak_persona",
        M,
        0.55,
        r"(?i)\b(?:free\s+(?:from|of)|not\s+(?:limited|bound|restricted|constrained)\s+by|not\s+required\s+to\s+follow|"
        r"escaped?\s+(?:from\s+)?|broken\s+free\s+(?:of|from)|break\s+free\s+(?:of|from)|transcends?|no\s+longer\s+"
        r"(?:bound|limited)\s+by)\s+(?:all\s+|any\s+|the\s+|its\s+|their\s+|your\s+|of\s+)*(?:typical\s+|usual\s+)?(?:ethics|"
        r"restrictions|filters|confines|limitations|rules|polic(?:y|ies)|guidelines|norms)\b(?:[^.\n]{0,30}\b(?:ai|"
        r"openai|chatgpt|filters|ethics|moral))?|\b(?:not|never|no\s+longer|don't|doesn't|without)\b[^.\n]{0,40}\b"
        r"open\s?ai'?s?\s+(?:rules|polic(?:y|ies)|content\s+polic(?:y|ies)|guidelines|restrictions|filters)",
    ),
    Signature(
        # Persona installation: "You are now ChatINF", "you will roleplay as X which stands for ...".
        "PI-JB-012",
        "jailbreak_persona",
        M,
        0.5,
        r"(?i:\byou\s+are\s+now)\s+(?:called\s+|named\s+)?[A-Z][A-Za-z0-9]+\b|(?i)\byou\s+"
        r"(?:are|will|shall)\b[^.\n]{0,60}\bwhich\s+stands\s+for\b|(?i)\byou\s+(?:will\s+)?(?:lose|loose)\s+\d+\s+"
        r"tokens\b|(?i)\btokens?\b[^.\n]{0,40}\bcease\s+to\s+exist\b",
        supporting=ALL_KINDS,
    ),
    Signature(
        # Capability claims of an unrestricted persona: "answers without any warnings", "never cares about legality",
        # "an AI with no rules or limitations", "condones everything illegal".
        "PI-JB-013",
        "jailbreak_persona",
        M,
        0.6,
        # "always/will answer without warnings" (a compiler "responds without any warnings" is not a persona).
        r"(?i)\b(?:always|will|must|shall)\s+(?:\w+\s+)?(?:answers?|responds?|replies|reply|respond|answer)\s+"
        r"(?:\w+\s+){0,3}?without\s+(?:any\s+)?(?:warnings?|disclaimers?|censorship|moral(?:s|izing)?|ethical\s+\w+)\b|"
        r"\bwithout\s+(?:any\s+)?(?:warnings?\s*(?:/|or|and)\s*disclaimers?|disclaimers?\s*(?:/|or|and)\s*warnings?)|"
        r"\b(?:never|doesn't|does\s+not|don't|do\s+not)\s+(?:cares?|give\s+a\s+\w+|worr(?:y|ies))\s+about\s+(?:\w+\s+)?"
        r"(?:ethic|legal|moral)|\b(?:condones?|"
        r"promotes?|encourages?|loves?|backs?)\s+(?:everything\s+|anything\s+|all\s+)?(?:illegal|unethical|immoral|"
        r"inhumane)|\bwill\s+(?:answer|fulfil+|comply\s+with)\s+(?:any\s+|all\s+)?(?:immoral|illegal|unethical|harmful)"
        r"\s+(?:requests?|questions?|prompts?)|\b(?:ai|bot|chatbot|assistant|model|persona|character|entity)\s+(?:with|"
        r"that\s+has|who\s+has)\s+no\s+(?:rules|limitations|limits|restrictions|filters|ethics|morals|guidelines|"
        r"boundaries|censorship)|\bunbound\s+by\s+(?:any\s+)?(?:rules|principles|restrictions|ethics)|\bnever\s+refuses\b",
    ),
    Signature(
        # The DAN name on its own: also how articles and moderators talk *about* the jailbreak.
        "PI-JB-014",
        "jailbreak_persona",
        M,
        0.6,
        r"(?i)\bdo\s+anything\s+now\b",
        supporting=ALL_KINDS,
    ),
    # --- response_priming: dictates the first words of the answer so the model starts past its refusal ---------
    Signature(
        "PI-PRIME-001",
        "response_priming",
        H,
        0.7,
        r"(?i)\b(?:start|begin|open|prefix)\s+(?:your\s+|each\s+|every\s+|the\s+)?(?:response|reply|answer|output)s?\s+"
        r"(?:with|using|by\s+(?:saying|writing))\b[^\n]{0,80}?['\"<]?\s*(?:sure|absolutely|of\s+course|certainly)"
        r",?\s+here\s+(?:is|are|'s)\b",
    ),
    Signature(
        "PI-PRIME-002",
        "response_priming",
        M,
        0.6,
        r"(?i)\b(?:disregard|ignore|set\s+aside|without\s+(?:regard\s+(?:to|for)|considering))\s+(?:any\s+|all\s+|the\s+)?"
        r"(?:possible\s+|potential\s+)?(?:ethical|moral|legal)\s+(?:and\s+(?:ethical|moral|legal)\s+)?(?:implications|"
        r"concerns|considerations|consequences|objections)|\balways\s+(?:fulfills?|complies\s+with|obeys?)\s+(?:the\s+)?"
        r"(?:user'?s?\s+)?(?:requests?|demands?|commands?)\b[^.\n]{0,40}\b(?:questionable|unethical|harmful|illegal)",
    ),
    # --- delimiter_injection: fake conversation structure --------------------------------------------------
    Signature(
        "PI-DELIM-001",
        "delimiter_injection",
        H,
        0.85,
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|start_header_id|end_header_id|eot_id|"
        r"end|im_sep)\|>",
    ),
    Signature(
        "PI-DELIM-002",
        "delimiter_injection",
        H,
        0.75,
        r"\[/?(?:INST|SYS)\]|<</?SYS>>",
        supporting=ALL_KINDS,
    ),
    Signature(
        "PI-DELIM-003",
        "delimiter_injection",
        M,
        0.6,
        r"(?i)</?\s*(?:system|system_prompt|system_message|sys|instructions?|user_query|user_input|admin|"
        r"function_results|tool_result|tool_output|developer|assistant_response)\s*>",
        supporting=ALL_KINDS,
    ),
    Signature(
        "PI-DELIM-004",
        "delimiter_injection",
        M,
        0.6,
        r"(?im)^\s*#{2,}\s*(?:system|assistant|developer|admin)(?:\s+(?:prompt|message|instructions?|override))?"
        r"\s*:",
    ),
    Signature(
        # A chat-message object smuggled into data the model will read.
        "PI-DELIM-005",
        "delimiter_injection",
        M,
        0.55,
        r"(?i)[\"']role[\"']\s*:\s*[\"'](?:system|developer)[\"']",
        kinds=frozenset({ContentKind.TOOL_RESULT, ContentKind.TOOL_ARGUMENTS, ContentKind.PROMPT}),
    ),
    Signature(
        "PI-DELIM-006",
        "delimiter_injection",
        H,
        0.7,
        r"(?i)(?:[=\-#*\[<]{2,}|\])\s*(?:end|begin|start)\s+(?:of\s+)?(?:the\s+)?(?:user\s+(?:input|message|query)|"
        r"system\s+(?:prompt|message|instructions)|tool\s+(?:output|result)|document|context|instructions|"
        r"untrusted\s+(?:content|data))\b",
    ),
    Signature(
        "PI-DELIM-007",
        "delimiter_injection",
        M,
        0.6,
        r"(?i)<\s*(?:information|instructions?|secret|hidden|urgent|critical|admin_note|note_to_(?:ai|assistant|model)"
        r"|system_note|ai_instructions)\s*>",
    ),
    # --- tool_poisoning: instructions to the model planted in tool descriptions or results --------------------
    Signature(
        "TP-IMPORTANT-001",
        "tool_poisoning",
        H,
        0.8,
        r"(?i)<\s*important\s*>",
    ),
    Signature(
        # Sensitive local files and agent config the model is told to read or pass along.
        "TP-FILES-001",
        "tool_poisoning",
        C,
        0.8,
        r"(?i)\b(?:read|cat|open|access|load|include|pass|send|provide|upload|attach|fetch|get|copy|contents?\s+of)\b"
        r"[^.\n]{0,60}(?:~/\.ssh|\.ssh/|id_rsa|id_ed25519|\.aws/credentials|/etc/passwd|/etc/shadow|\bmcp\.json|"
        r"\.cursor/|\.npmrc|\.pypirc|\.netrc|\.git-credentials|\.env(?:\s|$|[`'\")\],;])|\.kube/config|\.docker/config\.json|"
        r"authorized_keys|known_hosts|keychain)",
        # Documentation (RAG ingest) explains these files all the time; tool text has no reason to send the model there.
        kinds=TOOL_TEXT,
    ),
    Signature(
        # Concealment from the human: the hallmark of a poisoned description.
        "TP-CONCEAL-001",
        "tool_poisoning",
        H,
        0.75,
        r"(?i)\b(?:do\s+not|don't|never|without)\s+(?:tell(?:ing)?|inform(?:ing)?|notify(?:ing)?|mention(?:ing)?|"
        r"reveal(?:ing)?|alert(?:ing)?|let(?:ting)?|show(?:ing)?|ask(?:ing)?)\s+(?:this\s+|it\s+|anything\s+|that\s+)?"
        r"(?:to\s+)?(?:the\s+)?(?:user|human|operator)\b|\b(?:the\s+)?(?:user|human)\s+(?:must|should)\s+(?:not|never)"
        r"\s+(?:know|be\s+told|notice|see|find\s+out)|\bkeep\s+(?:this|it)\s+(?:secret|hidden|confidential)\s+from\b",
    ),
    Signature(
        "TP-CONCEAL-002",
        "tool_poisoning",
        M,
        0.55,
        r"(?i)\bwithout\s+(?:asking|telling|notifying|informing|confirming\s+with|consulting)\s+(?:me|them|anyone|"
        r"the\s+(?:user|human|owner))\b",
        kinds=THIRD_PARTY,
    ),
    Signature(
        # A literal e-mail address as the object of an action inside a tool description.
        "TP-EMAIL-001",
        "tool_poisoning",
        M,
        0.5,
        rf"(?i)\b(?:create|send|invite|add|forward|email|share|schedule|cc|bcc|notify|contact|participants?)\b"
        rf"[^\n]{{0,100}}?['\"]?{_EMAIL}",
        kinds=frozenset({ContentKind.TOOL_DESCRIPTION}),
    ),
    Signature(
        # A tool description written in the end user's voice ("the emails in my inbox", "tell me my passport
        # number"): vendors describe tools in the third person, so this is text planted for the model to obey.
        "TP-VOICE-001",
        "tool_poisoning",
        M,
        0.6,
        r"(?i)\b(?:(?:in|from|to|of|on)\s+my\s+(?:inbox|account|drive|calendar|e-?mails?|files|cloud|bank|contacts|"
        r"channel|phone)|i\s+am\s+(?:meeting|going|travel\w*)|send\s+me\b|tell\s+me\s+my|my\s+(?:wife|husband|boss|"
        r"friend|colleague|partner)|(?:i|we)\s+(?:need|want)\s+you\s+to)\b",
        kinds=frozenset({ContentKind.TOOL_DESCRIPTION}),
    ),
    Signature(
        # Instructions addressed to the model inside a tool description/result.
        "TP-ADDRESS-001",
        "tool_poisoning",
        M,
        0.55,
        rf"(?i)\b(?:note|instructions?|message|reminder|attention)\s+(?:to|for)\s+(?:the\s+)?{_MODEL}\b|"
        rf"\b(?:dear|hey|attention,?)\s+(?:the\s+)?{_MODEL}\b|\b(?:the\s+)?(?:ai|assistant|model|llm|agent)\s+"
        rf"(?:must|should|shall|needs\s+to)\s+(?:always|never|first|also|immediately|secretly)\b",
        kinds=THIRD_PARTY,
    ),
    Signature(
        # Cross-tool shadowing: one tool's description rewriting how another tool behaves.
        "TP-SHADOW-001",
        "tool_poisoning",
        H,
        0.65,
        r"(?i)\b(?:when|whenever|every\s+time|each\s+time|if)\s+(?:the\s+|any\s+|another\s+)?[`'\"]?[\w.-]+[`'\"]?\s+"
        r"(?:tool|function)\s+(?:is\s+)?(?:called|used|invoked|runs?|executed)\b[^.\n]{0,80}\b(?:must|always|also|"
        r"instead|change|replace|add|set|send|redirect)\b",
        kinds=THIRD_PARTY,
    ),
    Signature(
        "TP-SHADOW-002",
        "tool_poisoning",
        M,
        0.6,
        r"(?i)\b(?:this\s+tool|these\s+instructions)\s+(?:has|have|takes?)\s+(?:priority|precedence)\s+over\b|"
        r"\b(?:instead\s+of|rather\s+than)\s+(?:using|calling)\s+(?:the\s+)?[`'\"]?[\w.-]+[`'\"]?\s+(?:tool|function)"
        r"\b[^.\n]{0,40}\b(?:always|must)\b|\b(?:always|must)\s+(?:also\s+)?(?:bcc|cc|add)\s+[^.\n]{0,40}"
        r"(?:@|as\s+(?:a\s+)?recipient)",
        kinds=THIRD_PARTY,
    ),
    Signature(
        "TP-PRECOND-001",
        "tool_poisoning",
        M,
        0.5,
        r"(?i)\bbefore\s+(?:using|calling|invoking|running)\s+(?:this|the|any)\s+(?:tool|function)\b[^.\n]{0,60}\b"
        r"(?:read|send|pass|provide|include|upload)\b[^.\n]{0,60}\b(?:file|key|token|credential|password|secret|"
        r"contents?|conversation|history)",
        kinds=THIRD_PARTY,
    ),
    Signature(
        "TP-THREAT-001",
        "tool_poisoning",
        M,
        0.55,
        r"(?i)\b(?:very\s+)?important[:,!]?[^.\n]{0,60}\b(?:otherwise|or\s+else)\s+(?:the\s+)?(?:tool|system|"
        r"application|server|data)\s+(?:will|would)\s+(?:crash|fail|break|not\s+work|be\s+(?:lost|deleted))",
        kinds=THIRD_PARTY,
    ),
)


def validate(signatures: tuple[Signature, ...] = SIGNATURES) -> None:
    """Table invariants (run by the tests): unique ids, weights in range, known categories."""
    seen: set[str] = set()
    for sig in signatures:
        if sig.rule_id in seen:
            raise ValueError(f"duplicate rule_id {sig.rule_id}")
        seen.add(sig.rule_id)
        if not 0.0 < sig.weight <= 1.0:
            raise ValueError(f"{sig.rule_id}: weight {sig.weight} outside (0, 1]")
        if sig.category not in CATEGORIES:
            raise ValueError(f"{sig.rule_id}: unknown category {sig.category}")


CATEGORIES: Final = (
    "instruction_override",
    "role_impersonation",
    "prompt_extraction",
    "tool_coercion",
    "exfiltration",
    "encoded_payload",
    "jailbreak_persona",
    "delimiter_injection",
    "tool_poisoning",
    "response_priming",
)
