"""The bearer token the server requires, from its settings: the token file's (--token-file) or WARPCORE_TOKEN's."""

from __future__ import annotations

from pathlib import Path


def configured_token(variable: str | None, token_file: Path | None) -> str | None:
    """The token without the whitespace around it (a file's last newline, a value pasted with a space), which no
    client sends; None without either setting. ValueError, naming where it came from, for a token that is set but
    empty (which would turn authentication off without a word) or that no client could send (a gRPC header value
    and an HTTP token are printable ASCII, without spaces), or for both settings at once (one would be ignored, and
    a client sending it locked out without a word)."""
    if token_file is not None and variable is not None:
        raise ValueError(
            f"both WARPCORE_TOKEN and the token file {token_file} are set: keep one of them (the server takes one)"
        )
    if token_file is not None:
        try:
            variable = token_file.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"cannot read the token file {token_file}: {error.strerror}") from None
        except UnicodeDecodeError:  # its bytes not quoted: they are the token, or some other file's
            raise ValueError(
                f"the token file {token_file} is not text (not UTF-8); a token is printable ASCII without spaces"
            ) from None
        where = f"the token file {token_file}"
    elif variable is None:
        return None
    else:
        where = "WARPCORE_TOKEN"
    token = variable.strip()
    if not token:
        unset = "remove the file setting" if token_file is not None else "unset it"
        raise ValueError(f"{where} is empty: {unset} to serve without a token, or put the token in it")
    if not token.isascii() or not token.isprintable() or any(character.isspace() for character in token):
        raise ValueError(f"{where} holds a token no client can send: make it printable ASCII without spaces")
    return token
