"""WARPCORE_* variables that nothing reads, told as the server starts: a name misspelled in a manifest would otherwise
leave its setting at its default in silence. Told, not refused: a manifest written for a newer server, with settings
this one does not have, still starts it. So are the vendor SDKs' own names for a base URL, which warpcore does not read:
set for an SDK, they would seem to send the server's calls there too."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping

from warpcore._client_env import CLIENT_VARIABLES

PREFIX = "WARPCORE_"
_SDK_NAMES = {"OPENAI_BASE_URL": "OPENAI_API_BASE", "ANTHROPIC_BASE_URL": "ANTHROPIC_API_BASE"}
"""The base URL variable each vendor SDK reads, and the one warpcore reads in its stead."""


class LookedUp(Mapping[str, str]):
    """`env`, noting the name of each variable looked up (set or not) in `names`: what a reader reads is known by
    its reading, with no list of names to keep beside it. Only lookups are noted: iterating is not reading."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        return self._env[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def unread_variables(env: Mapping[str, str], read: Iterable[str]) -> list[str]:
    """A warning for each WARPCORE_* variable of `env` that neither the server (`read`) nor a client reads, naming
    the variable it most likely stands for, and for a vendor SDK's base URL variable set without warpcore's."""
    known = {*read, *CLIENT_VARIABLES}
    # Compared without the prefix, which every name shares and would make any two alike; MODELS_PATH has none.
    by_stem = {name.removeprefix(PREFIX): name for name in known}
    warnings = []
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in known:
            closest = difflib.get_close_matches(name.removeprefix(PREFIX), by_stem, n=1)
            guess = f" (did you mean {by_stem[closest[0]]}?)" if closest else ""
            warnings.append(f"{name} is not a warpcore setting and is ignored{guess}")
        if name in _SDK_NAMES and env[name] and not env.get(_SDK_NAMES[name]):
            warnings.append(
                f"{name} is not read by warpcore, which takes {_SDK_NAMES[name]}: hosted models without a base_url of"
                " their own go to the API's default base URL"
            )
    return warnings
