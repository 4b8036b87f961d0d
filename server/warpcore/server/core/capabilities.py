"""What a loaded model can be asked for, as its adapter reports it on load."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    generate: bool = True
    embed: bool = False
    count_tokens: bool = False
    """An exact count of a prompt's tokens."""
    images: bool = False
    logprobs: bool = False
    tools: bool = False
    documents: bool = False
