"""A generation's prompt tokens and budget, refusing a prompt that leaves no room in the context."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from warpcore.server.adapters.llama.chat import ChatTemplate, RenderedPrompt
from warpcore.server.adapters.llama.context import PREFILL_PIECE
from warpcore.server.adapters.llama.control_text import Segment
from warpcore.server.adapters.llama.prefix_cache import piece_keys
from warpcore.server.adapters.llama.tokenizer import PromptTokenizer
from warpcore.server.adapters.llama.vision import IMAGE_TOKEN, ImagePrompt, Projector
from warpcore.server.core.domain import GenerationParams
from warpcore.server.core.errors import InvalidArgumentError, context_length_exceeded
from warpcore.server.core.tokens import Token, TokenCount

# No vocabulary piece is longer than this (Gemma's longest is 48 bytes), so a prompt of more bytes than
# context x this cannot fit, whatever its tokens.
MAX_BYTES_PER_TOKEN = 64


@dataclass(frozen=True)
class PreparedPrompt:
    """A generation ready to decode: its prompt tokens, how many it may add, and where its text stops."""

    tokens: list[int]
    budget: int
    user_stops: tuple[str, ...]
    template_stops: tuple[str, ...]
    piece_keys: list[int]
    """The prompt cache's keys of its whole prefill pieces; none when the request keeps its prompt out of it, or
    when it has images (a prompt with images always bypasses the prompt cache)."""
    images: ImagePrompt | None = None
    """Its images, whose embeddings stand where `tokens` holds IMAGE_TOKEN."""
    fills_context: bool = False
    """Whether its budget is all the room its context has left (max_tokens no less): spent, it has filled the context,
    and a larger max_tokens would give no more."""

    def text_end(self, position: int) -> int:
        """Where the prompt's text tokens from `position` on stop: at an image or at the end."""
        if self.images is None:
            return len(self.tokens)
        return self.images.text_end(position, len(self.tokens))


class PromptPreparer:
    """Prepares generations and counts prompts, both on the model's prompt thread: one at a time, since the
    vocabulary is one llama.cpp object. `keeps_prompts`: the model's prompt cache is on, so its tokenizer may
    remember what prompts that are not private hold."""

    def __init__(
        self, template: ChatTemplate, tokenizer: PromptTokenizer, projector: Projector | None, *, keeps_prompts: bool
    ) -> None:
        self._template = template
        self._tokenizer = tokenizer
        self._projector = projector
        self._keeps_prompts = keeps_prompts

    def count(self, params: GenerationParams, context_size: int, include_tokens: bool) -> TokenCount:
        """The prompt tokens `prepare` gives the same request, and their pieces when asked for; a prompt longer than
        the context is counted whole all the same (a generation refuses it), up to the bytes no context can hold."""
        tokens, _, _ = self._tokens(params, context_size, threading.Event(), whole=True)
        pieces = tuple(Token(token, self._piece(token)) for token in tokens) if include_tokens else ()
        return TokenCount(len(tokens), pieces)

    def prepare(self, params: GenerationParams, context_size: int, stop: threading.Event) -> PreparedPrompt:
        """Render and tokenize the prompt for a `context_size` context. When `stop` is set meanwhile, the tokens
        may be cut short: the caller then drops the generation."""
        tokens, images, rendered = self._tokens(params, context_size, stop, whole=False)
        room = context_size - len(tokens)
        if room < 1:
            # Tokenizing stops a little past the context, so a longer prompt is counted only that far: its count
            # is not told, only that it is over.
            if room == 0:
                raise _too_long(
                    params,
                    context_size,
                    f"{len(tokens)} tokens, with no room left for the reply",
                    prompt_tokens=len(tokens),
                )
            raise _too_long(
                params,
                context_size,
                f"more than {context_size} tokens (counting its tokens gives its whole length)",
                prompt_tokens_more_than=context_size,
            )
        keys = piece_keys(tokens, PREFILL_PIECE) if params.cache_prompt and images is None else []
        budget, fills = min(params.max_tokens, room), room <= params.max_tokens
        return PreparedPrompt(tokens, budget, params.stop, rendered.template_stops, keys, images, fills_context=fills)

    def _tokens(
        self, params: GenerationParams, context_size: int, stop: threading.Event, *, whole: bool
    ) -> tuple[list[int], ImagePrompt | None, RenderedPrompt]:
        """The rendered prompt's tokens (and images): `whole`, or only until a little past `context_size`. The control
        texts the caller wrote are read as text (control_text.py)."""
        rendered = self._template.render(params)
        encoded = rendered.text.encode("utf-8")
        if len(encoded) > context_size * MAX_BYTES_PER_TOKEN:
            # Refused before tokenizing: whatever its tokens, it cannot fit.
            raise _too_long(
                params,
                context_size,
                f"{len(encoded)} bytes, more than {context_size} tokens can hold",
                prompt_bytes=len(encoded),
            )
        if rendered.images and self._projector is not None:  # the template renders images only with a projector
            tokens, images = self._projector.tokenize(encoded, rendered.images, add_bos=rendered.add_bos)
            return tokens, images, rendered
        remember = self._keeps_prompts and params.cache_prompt
        limit = len(encoded) + 1 if whole else context_size  # a token holds at least one byte
        # After the refusals above, which cost no more for a prompt full of control texts than for any other.
        masked = self._tokenizer.controls.masked(params)
        if masked is None:
            segments = [Segment(rendered.text, special=True)]
        else:
            segments = masked.segments(self._template.render(masked.params).text, self._tokenizer.controls)
        tokens = self._segments_tokens(segments, add_bos=rendered.add_bos, limit=limit, stop=stop, remember=remember)
        return tokens, None, rendered

    def _segments_tokens(
        self, segments: list[Segment], *, add_bos: bool, limit: int, stop: threading.Event, remember: bool
    ) -> list[int]:
        """The tokens of a prompt's segments, each tokenized apart, in order (one, unless the caller wrote control
        texts)."""
        tokens: list[int] = []
        for number, segment in enumerate(segments):
            tokens += self._tokenizer.tokenize(
                segment.text.encode("utf-8"),
                add_bos=add_bos and number == 0,
                limit=limit - len(tokens),
                stop=stop,
                remember=remember and segment.special,
                special=segment.special,
                mid_text=number > 0,
            )
            if len(tokens) > limit or stop.is_set():
                break
        return tokens

    def _piece(self, token: int) -> bytes:
        return b"" if token == IMAGE_TOKEN else self._tokenizer.piece(token)


def _too_long(params: GenerationParams, context_size: int, length: str, **size: int) -> InvalidArgumentError:
    """The refusal of a prompt that does not fit the context, saying its `length` and `size` (tokens or bytes)."""
    field = "messages" if params.messages else "prompt"
    metadata = {name: str(value) for name, value in size.items()}
    return context_length_exceeded("the prompt", length, context_size, field=field, metadata=metadata)
