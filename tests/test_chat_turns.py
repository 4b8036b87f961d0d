"""Runs of turns of one role on a local model: a template that insists that roles alternate gets each run as one
turn, as Anthropic's API combines them; a template that takes such runs gets them as they were sent."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.conftest import rich_details
from tests.test_local_tool_loop import ALTERNATING_TEMPLATE, tiny_model_with
from tests.tool_wire import user
from warpcore.v1 import inference_pb2 as pb

# Every turn as it comes, of any role in any order.
PLAIN_TEMPLATE = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"


def _assistant(text: str) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_ASSISTANT, content=text)


async def _prompt(tmp_path: Path, template: str, turns: list[pb.ChatMessage]) -> str:
    async with tiny_model_with(tmp_path, template) as stub:
        ask = pb.GenerateRequest(model_id="m", messages=turns)
        counted = await stub.CountTokens(pb.CountTokensRequest(request=ask, include_tokens=True))
        return b"".join(token.piece for token in counted.count.tokens).decode()


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (ALTERNATING_TEMPLATE, "<user>Hello\n\nHow are you?\n<assistant>Fine.\n\nAnd you?\n<user>Well.\n<assistant>"),
        (
            PLAIN_TEMPLATE,
            "<user>Hello\n<user>How are you?\n<assistant>Fine.\n<assistant>And you?\n<user>Well.\n<assistant>",
        ),
    ],
)
async def test_runs_of_one_role_are_one_turn_only_where_the_template_insists(
    tmp_path: Path, template: str, expected: str
) -> None:
    turns = [user("Hello"), user("How are you?"), _assistant("Fine."), _assistant("And you?"), user("Well.")]
    assert (await _prompt(tmp_path, template, turns)).endswith(expected)


async def test_a_template_that_refuses_the_combined_turns_too_is_still_a_clear_refusal(tmp_path: Path) -> None:
    turns = [_assistant("Hello"), user("Hi")]  # an assistant first: no combining makes roles alternate
    async with tiny_model_with(tmp_path, ALTERNATING_TEMPLATE) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.CountTokens(pb.CountTokensRequest(request=pb.GenerateRequest(model_id="m", messages=turns)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "roles must alternate" in (raised.value.details() or "")
    assert rich_details(raised.value)[0].reason == "CHAT_TEMPLATE_REJECTED"
