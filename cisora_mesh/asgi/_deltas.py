"""Token deltas: the text a model streams arrives a few characters per server-sent event.

A secret the model writes is therefore split across many events, and scanning each event alone never sees it
whole. For the streaming formats below, the middleware joins the deltas of each text channel (one per choice or
content block) and runs them through the same hold-back redactor as a plain text stream (`_stream.StreamRedactor`):
each delta event carries what the redactor released in place of its own text (possibly nothing while a possible
secret is held back), and what is still held when the channel ends (an event without a delta, `[DONE]`, or the end
of the stream) goes out in one more delta event built from the channel's last one (its `event:` and other lines
too, which clients dispatch on).

Known shapes (anything else is scanned one event at a time, as before):

* OpenAI Chat Completions streaming and the servers compatible with it:
  `{"choices": [{"index": 0, "delta": {"content": "..."}}]}`
* Anthropic Messages streaming: `{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
  "text": "..."}}`
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ._sse import SseEvent
from ._stream import StreamRedactor

Channel = tuple[str, int]
Slot = tuple[Channel, dict[str, Any], str]  # the channel, the JSON object holding its text, the text's key


def delta_slots(doc: object) -> list[Slot]:
    """The delta texts `doc` carries, with where each one lives (empty for any other event)."""
    if not isinstance(doc, dict):
        return []
    choices = doc.get("choices")
    if isinstance(choices, list):
        slots: list[Slot] = []
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                index = choice.get("index")
                slots.append((("choice", index if type(index) is int else position), delta, "content"))
        return slots
    if doc.get("type") == "content_block_delta":
        delta = doc.get("delta")
        if isinstance(delta, dict) and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            index = doc.get("index")
            return [(("block", index if type(index) is int else 0), delta, "text")]
    return []


class DeltaChannels:
    """The text channels of one stream, each behind its own hold-back redactor."""

    def __init__(self, redactor: Callable[[], StreamRedactor]) -> None:
        self._new = redactor
        self.redactors: dict[Channel, StreamRedactor] = {}
        # The channel's last delta event (as parsed and as received), to build the flush event from.
        self._last: dict[Channel, tuple[dict[str, Any], SseEvent]] = {}

    @property
    def blocked(self) -> bool:
        return any(r.blocked for r in self.redactors.values())

    def feed(self, doc: dict[str, Any], slots: list[Slot], event: SseEvent) -> bool:
        """Put what each channel may release in place of its delta text; False when a channel was blocked."""
        for channel, holder, key in slots:
            redactor = self.redactors.get(channel)
            if redactor is None:
                redactor = self.redactors[channel] = self._new()
            holder[key] = redactor.feed(holder[key])
            if redactor.blocked:
                return False
            self._last[channel] = (doc, event)
        return True

    def flush(self) -> list[tuple[dict[str, Any], SseEvent]] | None:
        """One delta event per channel still holding text, carrying the rest of it (the JSON data and the event to
        render it like); None when a channel blocked."""
        out: list[tuple[dict[str, Any], SseEvent]] = []
        for channel, redactor in self.redactors.items():
            rest = redactor.finish()
            if redactor.blocked:
                return None
            if not rest:
                continue
            last, event = self._last[channel]
            doc = copy.deepcopy(last)
            for other, holder, key in delta_slots(doc):
                holder[key] = rest if other == channel else ""
            out.append((doc, event))
        return out
