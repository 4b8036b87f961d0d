"""A hosted API's settings: each from the request's ApiConfig, else the server's environment, else a default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from warpcore.server.adapters.env import env_float, env_key, env_str, variables_for
from warpcore.server.core.domain import ApiSettings, BackendKind
from warpcore.server.core.errors import FailedPreconditionError, InvalidArgumentError
from warpcore.server.core.settings_rules import check_header_value, check_settings

DEFAULT_TIMEOUT = 600.0  # seconds for one upstream request, as in both vendor SDKs


@dataclass(frozen=True)
class ApiEnvironment:
    """The environment variables a provider reads its settings from."""

    provider: str
    api_key: str
    base_url: str
    default_base_url: str
    organization: str | None = None
    version: str | None = None
    """The variable of the API version the provider's requests name (Anthropic's anthropic-version header)."""

    @property
    def variables(self) -> dict[str, str]:
        """The ApiSettings field (or api_version) each variable stands in for."""
        named = {"api_key": self.api_key, "base_url": self.base_url, "timeout": f"{self.provider.upper()}_TIMEOUT"}
        others = {"organization": self.organization, "api_version": self.version}
        return named | {name: variable for name, variable in others.items() if variable is not None}


OPENAI = ApiEnvironment(
    provider="openai",
    api_key="OPENAI_API_KEY",
    base_url="OPENAI_API_BASE",
    default_base_url="https://api.openai.com/v1",
    organization="OPENAI_ORGANIZATION",
)
ANTHROPIC = ApiEnvironment(
    provider="anthropic",
    api_key="ANTHROPIC_API_KEY",
    base_url="ANTHROPIC_API_BASE",
    default_base_url="https://api.anthropic.com",
    version="ANTHROPIC_API_VERSION",
)
PROVIDERS = {BackendKind.OPENAI: OPENAI, BackendKind.ANTHROPIC: ANTHROPIC}


@dataclass(frozen=True)
class ResolvedApi:
    provider: str
    api_key: str = field(repr=False)
    base_url: str
    organization: str | None
    timeout: float
    embedding: bool | None = None
    """ApiSettings.embedding: what the model does, where the request says."""
    unlisted: bool = False
    """ApiSettings.unlisted: loaded without finding it in the API's model list."""
    default_base_url: str = ""
    """The provider's own API, whose form a base URL of a compatible server takes."""
    version: str | None = None
    """The API version of the environment's ApiEnvironment.version variable, when set."""


def resolve_api(settings: ApiSettings, env: Mapping[str, str], names: ApiEnvironment) -> ResolvedApi:
    """Each field from the request's ApiConfig, else the environment, else the default; the key is required.

    The server's own key only ever goes to the server's own base URL: a request that names a base URL must bring
    its key too, or anyone able to call LoadModel could have the server send its key to a host of their choosing.
    So does the server's organization, which would tell that host whom the server's key bills.
    """
    if settings.base_url and not settings.api_key:
        raise InvalidArgumentError(
            "backend_config.api.base_url is set, so backend_config.api.api_key must be set too:"
            " the server's own key is only sent to the base URL configured on the server",
            field="settings.api_key",
            reason="API_KEY_REQUIRED_WITH_BASE_URL",
        )
    from_env, version = environment_settings(env, names)
    api_key = settings.api_key or from_env.api_key
    if not api_key:
        raise FailedPreconditionError(
            f"no {names.provider} API key: set {names.api_key} in the server's environment, or, where the server"
            " takes keys from clients (--api-overrides), backend_config.api.api_key in the request",
            reason="API_KEY_MISSING",
            metadata={"provider": names.provider},
        )
    organization = settings.organization
    if organization is not None and names.organization is None:
        raise InvalidArgumentError(
            f"the {names.provider} API has no organization setting (OpenAI's only); leave it unset",
            field="settings.organization",
            reason="OPTION_UNSUPPORTED",
        )
    if organization is None and names.organization is not None and not settings.base_url:
        organization = from_env.organization  # the server's, for the server's own base URL only
    return ResolvedApi(
        provider=names.provider,
        api_key=api_key,
        base_url=settings.base_url or from_env.base_url or names.default_base_url,
        organization=organization,
        timeout=settings.timeout or from_env.timeout or DEFAULT_TIMEOUT,
        embedding=settings.embedding,
        unlisted=settings.unlisted,
        default_base_url=names.default_base_url,
        version=version,
    )


def environment_settings(env: Mapping[str, str], names: ApiEnvironment) -> tuple[ApiSettings, str | None]:
    """The settings the server's environment gives every model of the provider, and its API version, checked by the
    rules of a request's ApiConfig (a base URL without credentials, a timeout in range, a key a header can carry)."""
    settings = ApiSettings(
        api_key=env_key(env, names.api_key),
        base_url=env_str(env, names.base_url),
        organization=env_str(env, names.organization) if names.organization is not None else None,
        timeout=env_float(env, names.variables["timeout"]),
    )
    version = env_str(env, names.version) if names.version is not None else None
    with variables_for(names.variables):
        check_settings(settings)
        if version is not None:
            check_header_value(version, "api_version")
    return settings, version


def request_timeout(configured: float, remaining: float | None) -> float:
    """The upstream timeout: the configured one, cut to what is left of the caller's deadline."""
    return configured if remaining is None else max(min(configured, remaining), 0.001)


def deadline_bounds(configured: float, remaining: float | None) -> bool:
    """Whether the caller's deadline, not the configured timeout, set request_timeout: a wait that timed out then
    lasted what was left of the deadline before the request began, so the deadline has passed, whether or not the
    door's own end of the call has come yet."""
    return remaining is not None and remaining <= configured
