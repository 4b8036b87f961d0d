"""Generated tokens' bytes as text, and where each token begins in it: a token may hold part of a character (a
byte-level token of a multi-byte one), and bytes that never make a character read as U+FFFD."""

from __future__ import annotations

import codecs


class TokenCharacters:
    """Decodes tokens' bytes one token after another as UTF-8 (each run of bytes that makes no character one U+FFFD,
    as Python's decoder replaces it), counting the characters."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.characters = 0
        """Characters decoded so far."""

    def decode(self, token: bytes) -> tuple[str, int]:
        """The text `token` finishes, and the character its first byte lies in (an empty token's: the next one). A
        byte may both end characters begun before it and begin another (c3 then c3: the first is U+FFFD), so the
        character is known only once its byte is decoded."""
        text = self._decoder.decode(token[:1])
        # Decoded, the first byte is the last character's, or held: then the next one's.
        start = self.characters + len(text) - (1 if text and not self.inside else 0)
        text += self._decoder.decode(token[1:])
        self.characters += len(text)
        return text, start

    @property
    def inside(self) -> bool:
        """Whether the bytes so far end inside a character, which the next token's bytes may finish."""
        return bool(self._decoder.getstate()[0])

    def final(self) -> str:
        """U+FFFD for the bytes of a character the tokens never finished, if any."""
        text = self._decoder.decode(b"", final=True)
        self.characters += len(text)
        return text
