"""Stop sequences split across streamed pieces are found, and never partly emitted."""

from __future__ import annotations

from warpcore.server.core.stop_scanner import StopScanner


def feed_all(scanner: StopScanner, pieces: list[str]) -> tuple[str, str | None]:
    emitted = []
    for piece in pieces:
        text, stop = scanner.feed(piece)
        emitted.append(text)
        if stop is not None:
            return "".join(emitted), stop
    return "".join(emitted) + scanner.flush(), None


def test_stop_split_over_pieces_is_found_and_not_emitted() -> None:
    assert feed_all(StopScanner(["END"]), ["hello E", "N", "D world"]) == ("hello ", "END")


def test_partial_match_that_fails_is_released() -> None:
    scanner = StopScanner(["END"])
    assert scanner.feed("hello EN") == ("hello ", None)
    assert scanner.feed("x") == ("ENx", None)


def test_earliest_stop_wins() -> None:
    assert feed_all(StopScanner(["world", "lo"]), ["hello world"]) == ("hel", "lo")


def test_held_tail_is_flushed_at_the_end() -> None:
    assert feed_all(StopScanner(["ENDING"]), ["the END"]) == ("the END", None)


def test_no_stops_passes_everything_through() -> None:
    scanner = StopScanner([])
    assert scanner.feed("abc") == ("abc", None)
    assert scanner.flush() == ""
