"""Chat messages to prompt text: the GGUF's own Jinja template, or one of llama-cpp-python's named formats."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import llama_cpp
from llama_cpp import llama_chat_format, llama_types

from warpcore.server.adapters.llama.constraint import uses_tools
from warpcore.server.adapters.llama.tool_calls import CALL_OPENING, call_text
from warpcore.server.adapters.llama.vision import PromptImage
from warpcore.server.core.content import SYSTEM_SEPARATOR, DocumentPart, ImagePart, TextPart, one_text
from warpcore.server.core.domain import (
    ChatMessage,
    GenerationParams,
    Role,
)
from warpcore.server.core.errors import FailedPreconditionError, InvalidArgumentError
from warpcore.server.core.tooling import (
    Tool,
    ToolChoiceMode,
)

# Chat formats of llama-cpp-python that can be chosen by name: those of bounds.CHAT_FORMAT_NAMES, the rule a load is
# checked by before anything is loaded (test_local_settings.py holds them to one another).
CHAT_FORMATTERS: dict[str, llama_chat_format.ChatFormatter] = {
    "alpaca": llama_chat_format.format_alpaca,
    "chatml": llama_chat_format.format_chatml,
    "gemma": llama_chat_format.format_gemma,
    "llama-2": llama_chat_format.format_llama2,
    "llama-3": llama_chat_format.format_llama3,
    "mistral-instruct": llama_chat_format.format_mistral_instruct,
    "zephyr": llama_chat_format.format_zephyr,
}
# Formats whose template has no system turn: the system text opens the first user turn instead.
_FORMATS_WITHOUT_SYSTEM = {"gemma"}
RESPONSE_OPENING, RESPONSE_CLOSING = "<tool_response>", "</tool_response>"
"""How a tool's result is shown to a model whose template has no tool turns: Hermes' lines, as Qwen's templates do,
which models trained on that format know."""


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    add_bos: bool
    template_stops: tuple[str, ...]
    """The template's own end-of-turn strings."""
    images: tuple[PromptImage, ...] = ()
    """The images the text marks, in its order."""


class ChatTemplate:
    """Renders a generation's prompt; built once per model on its worker thread."""

    def __init__(
        self, llama: llama_cpp.Llama, model: str, chat_format: str | None, image_marker: str | None = None
    ) -> None:
        template = llama.metadata.get("tokenizer.chat_template")
        self._image_marker = image_marker
        """What stands for an image in the rendered text; None: the model reads no images."""
        self._fold_system = False
        self.calls_tools = bool(chat_format is None and template and "tools" in template and CALL_OPENING in template)
        """The template shows the model its tools and takes tool calls in the Hermes format (Qwen, Hermes...)."""
        self._format: llama_chat_format.ChatFormatter
        if chat_format is None and template:
            try:
                self._format = llama_chat_format.Jinja2ChatFormatter(
                    template=template,
                    eos_token=_token_text(llama, llama.token_eos()),
                    bos_token=_token_text(llama, llama.token_bos()),
                )
            except jinja2.TemplateError as error:
                raise FailedPreconditionError(
                    f"the chat template in {model!r} cannot be used ({error}); load the model with a chat_format"
                    f" setting instead ({', '.join(sorted(CHAT_FORMATTERS))})",
                    reason="MODEL_LOAD_FAILED",
                ) from None
            return
        if chat_format is None:
            architecture = llama.metadata.get("general.architecture", "")
            chat_format = "gemma" if architecture.startswith("gemma") else "llama-2"
        self._fold_system = chat_format in _FORMATS_WITHOUT_SYSTEM
        self._format = CHAT_FORMATTERS[chat_format]

    def render(self, params: GenerationParams) -> RenderedPrompt:
        if params.prompt is not None:
            prefix = params.system + SYSTEM_SEPARATOR if params.system else ""
            return RenderedPrompt(prefix + params.prompt, True, ())
        with_tools = uses_tools(params)
        system = params.system
        if with_tools and not self.calls_tools:
            # The template cannot show the tools: tell of them in words; the grammar makes the call valid.
            words = _tools_in_words(params.tools, may_answer=params.tool_choice.mode is ToolChoiceMode.AUTO)
            system = SYSTEM_SEPARATOR.join(part for part in (system, words) if part)
        # A last assistant message to continue (prefill) is no turn of the template's: the answer's own beginning,
        # its text follows the template's opening of the answer.
        continues = params.continues_last(api_continues=False)
        turns = params.messages[:-1] if continues else params.messages
        answer_start = _text(params.messages[-1], "") if continues else ""
        images = _images(turns, self._image_marker)
        marker = self._image_marker or ""
        messages = _chat_messages(
            turns, system, fold_system=self._fold_system, tool_turns=self.calls_tools, marker=marker
        )
        tools = [_tool_entry(tool) for tool in params.tools] if with_tools and self.calls_tools else None
        try:
            rendered = self._apply(messages, tools)
        except ValueError as error:  # a template's raise_exception(), e.g. on misordered roles
            # A template that insists that roles alternate (Gemma's, Llama 2's, Mistral's) gets a run of turns of one
            # role as one turn, as Anthropic's API combines them; a template that takes such runs gets them as sent.
            combined = _combined(messages)
            if combined == messages:
                raise _rejected(error) from None
            try:
                rendered = self._apply(combined, tools)
            except ValueError:
                raise _rejected(error) from None
        stops = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else []
        return RenderedPrompt(rendered.prompt + answer_start, not rendered.added_special, tuple(stops), images)

    def _apply(
        self, messages: list[llama_types.ChatCompletionRequestMessage], tools: list[dict[str, Any]] | None
    ) -> llama_chat_format.ChatFormatterResponse:
        """The template applied; its refusal of the messages (a ValueError) left to the caller."""
        try:
            return self._format(messages=messages, tools=tools)
        except ValueError:
            raise
        except Exception as error:
            raise FailedPreconditionError(
                f"the model's chat template could not be rendered ({type(error).__name__}: {error}); load the model"
                f" with a chat_format setting ({', '.join(sorted(CHAT_FORMATTERS))}) or send a prompt"
                " instead of messages",
                reason="CHAT_TEMPLATE_FAILED",
            ) from error


def _rejected(error: ValueError) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"the model's chat template rejected these messages: {error}", field="messages", reason="CHAT_TEMPLATE_REJECTED"
    )


def _combined(turns: list[Any]) -> list[Any]:
    """Each run of user (or assistant) turns as one turn: their texts a paragraph each, an assistant's calls in
    order."""
    combined: list[Any] = []
    for turn in turns:
        previous = combined[-1] if combined else None
        if previous is None or previous["role"] != turn["role"] or turn["role"] not in ("user", "assistant"):
            combined.append(turn)
            continue
        merged = {**previous, "content": "\n\n".join(text for text in (previous["content"], turn["content"]) if text)}
        if "tool_calls" in turn:
            merged["tool_calls"] = [*previous.get("tool_calls", ()), *turn["tool_calls"]]
        combined[-1] = merged
    return combined


def _token_text(llama: llama_cpp.Llama, token: int) -> str:
    return llama.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""


def _tool_entry(tool: Tool) -> dict[str, Any]:
    function = {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)}
    return {"type": "function", "function": function}


def _tools_in_words(tools: Sequence[Tool], *, may_answer: bool) -> str:
    """The tools and the format of a call, for a template that shows neither: under auto the model may answer in
    text instead (the grammar takes over once it opens a call)."""
    listed = json.dumps([_tool_entry(tool)["function"] for tool in tools])
    call = f'{CALL_OPENING}{{"name": ..., "arguments": ...}}</tool_call>'
    if may_answer:
        return f"To call one of these tools, write {call}; otherwise answer in text: {listed}"
    return f"Call one of these tools as {call}: {listed}"


def _images(messages: Sequence[ChatMessage], marker: str | None) -> tuple[PromptImage, ...]:
    """The images of `messages` in order, refused unless a multimodal projector is loaded; a URL is never fetched.
    Documents are refused: llama.cpp reads no PDF."""
    images = []
    for index, message in enumerate(messages):
        for number, part in enumerate(message.parts):
            field = f"messages[{index}].parts[{number}]"
            if isinstance(part, DocumentPart):
                raise InvalidArgumentError(
                    f"{field} is a document, which a llama.cpp model cannot read; send its text, or send the document"
                    " to a hosted model that reads documents (openai or anthropic backend)",
                    field=field,
                    reason="DOCUMENTS_UNSUPPORTED",
                )
            if not isinstance(part, ImagePart):
                continue
            if marker is None:
                raise InvalidArgumentError(
                    f"{field} is an image, and this llama.cpp model was loaded without a multimodal projector; load it"
                    " with backend_config.local.llama_cpp.mmproj (its projector GGUF under MODELS_PATH), or send the"
                    " image to a hosted model that reads images (openai or anthropic backend)",
                    field=field,
                    reason="IMAGES_UNSUPPORTED",
                )
            if part.url:
                raise InvalidArgumentError(
                    f"{field} is an image URL, which a local model never fetches; send the image's bytes instead",
                    field=field,
                    reason="IMAGE_URL_UNSUPPORTED",
                )
            images.append(PromptImage(field, part.data))
    return tuple(images)


def _text(message: ChatMessage, marker: str) -> str:
    """A message's text with its parts, each on a line of its own, an image as the marker (checked by `_images`)."""
    texts = [message.content] if message.content else []
    texts += [part.text if isinstance(part, TextPart) else marker for part in message.parts]
    return one_text(texts)


def _chat_messages(
    messages: Sequence[ChatMessage], system: str | None, *, fold_system: bool, tool_turns: bool, marker: str
) -> list[llama_types.ChatCompletionRequestMessage]:
    """Messages in llama-cpp-python's shape; system text opens the first user turn if the format has no system turn.
    Tool calls and results go to a template that has a format for them as such, else as text (`_as_text`)."""
    system_parts = [system] if system else []
    system_parts += [message.content for message in messages if message.role is Role.SYSTEM]
    turns: list[Any] = []
    for index, message in enumerate(messages):
        if message.role is Role.SYSTEM:
            continue
        turn = _turn(message, index, marker=marker) if tool_turns else _as_text(message, index, marker)
        after_result = Role.TOOL in (message.role, messages[index - 1].role)
        if turns and turn["role"] == turns[-1]["role"] == "user" and after_result:
            # Results (and the user's words after them) are one user turn, as templates that insist that roles
            # alternate (Gemma's, Llama 2's) take them.
            turns[-1] = {"role": "user", "content": f"{turns[-1]['content']}\n\n{turn['content']}"}
            continue
        turns.append(turn)
    if system_parts and fold_system and turns and turns[0]["role"] == "user":
        turns[0] = {"role": "user", "content": SYSTEM_SEPARATOR.join([*system_parts, turns[0]["content"]])}
    elif system_parts:
        turns.insert(0, {"role": "system", "content": SYSTEM_SEPARATOR.join(system_parts)})
    return turns


def _as_text(message: ChatMessage, index: int, marker: str) -> dict[str, Any]:
    """A turn for a template with no format for tool calls and results: an assistant's calls as the text the tool
    grammar makes the model write, a result as a user turn in Hermes' <tool_response> lines."""
    text = _text(message, marker)
    if message.role is Role.TOOL:
        return {"role": "user", "content": f"{RESPONSE_OPENING}\n{_result_text(message, text)}\n{RESPONSE_CLOSING}"}
    # Arguments in one canonical form, whatever their spacing: the doors hand them over re-encoded (Anthropic's input
    # is an object), and the same conversation must make the same prompt through each.
    calls = []
    for number, call in enumerate(message.tool_calls):
        arguments = _arguments(call.arguments, f"messages[{index}].tool_calls[{number}].arguments")
        calls.append(call_text(call.name, json.dumps(arguments, ensure_ascii=False)))
    return {"role": message.role.value, "content": "\n".join(part for part in (text, *calls) if part)}


def _turn(message: ChatMessage, index: int, *, marker: str) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": message.role.value, "content": _text(message, marker)}
    if message.role is Role.TOOL:
        turn["tool_call_id"] = message.tool_call_id
        turn["content"] = _result_text(message, turn["content"])
    if message.tool_calls:
        turn["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": _arguments(call.arguments, f"messages[{index}].tool_calls[{number}].arguments"),
                },
            }
            for number, call in enumerate(message.tool_calls)
        ]
    return turn


def _result_text(message: ChatMessage, text: str) -> str:
    """A tool result's text; a failed one's begins "Error: ", as OpenAI's convention writes it (which the OpenAI door
    passes as it is), so that a failure reads alike however the caller flagged it."""
    return f"Error: {text}" if message.is_error else text


def _arguments(text: str, field: str) -> Any:
    """Templates show arguments as an object (their `tojson`), as Hugging Face's chat templates expect."""
    try:
        return json.loads(text or "{}")
    except ValueError:
        raise InvalidArgumentError("tool call arguments must be JSON", field=field) from None
