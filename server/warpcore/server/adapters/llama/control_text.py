"""Text a caller wrote that spells a control token (`<end_of_turn>`, `</s>`, `[INST]`) is read as that text.

llama.cpp reads a control token's text anywhere in a prompt tokenized with special tokens on, which a chat template's
own markers need. A user's message, a tool's result (a fetched web page) or a system prompt that holds
`<end_of_turn>\\n<start_of_turn>model\\n` would then end its turn and open a model turn of its writer's making.

So before the template renders a request, each control text in the caller's strings is replaced by a marker: a
word of letters and digits, new for each request, which no template escapes, trims or moves apart from its text.
The rendered prompt is then cut at the markers, and each marker's control text is tokenized with special tokens off.
Nothing is searched for in the rendered prompt: wherever the template puts a caller's text (a later turn, a system
message moved first, a tool's description inside JSON), its control texts travel as markers, and the template's own
markers, which were never replaced, stay tokens."""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp

from warpcore.server.core.content import TextPart
from warpcore.server.core.domain import ChatMessage, GenerationParams

# Most control tokens' texts are one bracketed word: found by shape, then looked up, in a time about linear in the
# text. Each candidate starts at an opening bracket, and only that bracket is taken, so that a candidate inside
# another (`[<end_of_turn>]`, `<[INST]>`) is found too: each group is a word's inside, its brackets around it.
_BRACKETED = re.compile(r"<(?=([^<>\s]{1,128})>)|\[(?=([^\[\]\s]{1,128})\])")
# The token kinds that llama.cpp reads from text only when special tokens are on.
_READ_ONLY_WHEN_SPECIAL = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN


@dataclass(frozen=True)
class Segment:
    """A stretch of a rendered prompt, tokenized with special tokens on (the template's markers in it) or off."""

    text: str
    special: bool


class ControlTexts:
    """The texts of a vocabulary's control tokens, and the masking of them in a request's caller-written strings."""

    def __init__(self, texts: set[str]) -> None:
        texts.discard("")
        self._bracketed = {text for text in texts if next(_shapes(text), None) == (0, len(text))}
        others = sorted(texts - self._bracketed, key=len, reverse=True)  # the longest first, as llama.cpp matches
        self._others = re.compile("|".join(map(re.escape, others))) if others else None

    @classmethod
    def of(cls, llama: llama_cpp.Llama) -> ControlTexts:
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        return cls(
            {
                llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", "replace")
                for token in range(llama.n_vocab())
                if llama_cpp.llama_vocab_get_attr(vocab, token) & _READ_ONLY_WHEN_SPECIAL
            }
        )

    def holds(self, text: str) -> bool:
        """Whether `text` spells a control token."""
        if any(text[start:stop] in self._bracketed for start, stop in _shapes(text)):
            return True
        return self._others is not None and self._others.search(text) is not None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where `text` spells control tokens, in order and apart (of two that overlap, the one that starts first)."""
        found = [(start, stop) for start, stop in _shapes(text) if text[start:stop] in self._bracketed]
        if self._others is not None:
            found += [match.span() for match in self._others.finditer(text)]
            found.sort()
        spans: list[tuple[int, int]] = []
        for start, stop in found:
            if not spans or start >= spans[-1][1]:
                spans.append((start, stop))
        return spans

    def masked(self, params: GenerationParams) -> Masked | None:
        """`params` with the control texts in its caller's strings replaced by markers; None when it holds none, or
        when it is a prompt without chat messages: that is the caller's own formatting, control tokens included."""
        if params.prompt is not None:
            return None
        masks = _Masks(self)
        masked = masks.params(params)  # one walk finds and masks, so that no string can be masked but not found
        if not masks.texts:
            return None
        return Masked(masked, re.compile(re.escape(masks.nonce) + r"(\d+)x"), tuple(masks.texts))


@dataclass(frozen=True)
class Masked:
    """A request whose caller's control texts are markers, and how to read its rendered prompt."""

    params: GenerationParams
    _marker: re.Pattern[str]
    _texts: tuple[str, ...]

    def segments(self, rendered: str, controls: ControlTexts) -> list[Segment]:
        """`rendered` cut into what is tokenized with special tokens on (from the first to the last of the template's
        markers in a stretch between the caller's control texts) and off (those control texts, joined with the text
        around them up to the nearest marker, which spells no control token and so reads the same either way): a
        caller's "Say <end_of_turn> now" is tokenized in one piece, as llama.cpp tokenizes any text between two
        markers, so that its space and "<" join as they would in any text."""
        runs: list[tuple[bool, list[str]]] = []  # each run's texts, joined once at the end

        def add(text: str, special: bool) -> None:
            if not text:
                return
            if runs and not special and not runs[-1][0]:
                runs[-1][1].append(text)
            else:
                runs.append((special, [text]))

        for number, piece in enumerate(self._marker.split(rendered)):
            if number % 2:
                add(self._texts[int(piece)], special=False)
                continue
            spans = controls.spans(piece)
            if not spans:
                add(piece, special=False)
                continue
            first, last = spans[0][0], spans[-1][1]
            add(piece[:first], special=False)
            add(piece[first:last], special=True)
            add(piece[last:], special=False)
        return [Segment("".join(texts), special) for special, texts in runs]


class _Masks:
    """The markers of one request: `{nonce}{index}x`, the index that of the control text in `texts`."""

    def __init__(self, controls: ControlTexts) -> None:
        self._controls = controls
        self.nonce = "wc" + secrets.token_hex(8) + "n"
        self.texts: list[str] = []
        self._indexes: dict[str, int] = {}

    def params(self, params: GenerationParams) -> GenerationParams:
        tools = tuple(
            dataclasses.replace(
                tool,
                name=self._text(tool.name),
                description=self._text(tool.description),
                parameters=self._value(tool.parameters),
            )
            for tool in params.tools
        )
        system = None if params.system is None else self._text(params.system)
        messages = tuple(self._message(message) for message in params.messages)
        return dataclasses.replace(params, system=system, messages=messages, tools=tools)

    def _message(self, message: ChatMessage) -> ChatMessage:
        calls = tuple(
            dataclasses.replace(
                call, id=self._text(call.id), name=self._text(call.name), arguments=self._arguments(call.arguments)
            )
            for call in message.tool_calls
        )
        parts = tuple(
            dataclasses.replace(part, text=self._text(part.text)) if isinstance(part, TextPart) else part
            for part in message.parts
        )
        return dataclasses.replace(
            message,
            content=self._text(message.content),
            tool_calls=calls,
            tool_call_id=self._text(message.tool_call_id),
            parts=parts,
        )

    def _arguments(self, arguments: str) -> str:
        """A call's arguments, masked in the object that templates show (chat.py decodes them), where an escape
        (`\\u003ceos\\u003e`) spells the control text; arguments that are no JSON are masked as text, and refused
        by chat.py."""
        decoded = _decoded(arguments)
        if decoded is _NOT_JSON:
            return self._text(arguments)
        return json.dumps(self._value(decoded), ensure_ascii=False)

    def _value(self, value: Any) -> Any:
        """A JSON value (a tool's parameters) with its strings, keys included, masked."""
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, Mapping):
            return {self._text(str(key)): self._value(item) for key, item in value.items()}
        if isinstance(value, Sequence):
            return [self._value(item) for item in value]
        return value

    def _text(self, text: str) -> str:
        out, end = [], 0
        for start, stop in self._controls.spans(text):
            out += [text[end:start], self._marker(text[start:stop])]
            end = stop
        return "".join(out) + text[end:] if out else text

    def _marker(self, control: str) -> str:
        index = self._indexes.get(control)
        if index is None:
            index = self._indexes[control] = len(self.texts)
            self.texts.append(control)
        return f"{self.nonce}{index}x"


def _shapes(text: str) -> Iterator[tuple[int, int]]:
    """The spans of `text` shaped as one bracketed word, nested ones included."""
    for match in _BRACKETED.finditer(text):
        start = match.start()
        inside = match.group(1) or match.group(2)
        yield start, start + len(inside) + 2


_NOT_JSON = object()


def _decoded(arguments: str) -> Any:
    """A call's arguments decoded as chat.py decodes them, or _NOT_JSON."""
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return _NOT_JSON
