"""What the server tells the operator once its doors are open: one line of where and how it serves, and a warning
when a door that takes calls is open to other machines with nothing to keep strangers out."""

from __future__ import annotations

from collections.abc import Sequence

from warpcore.server.core.policy import is_loopback
from warpcore.server.rpc.addresses import host_port
from warpcore.server.rpc.server import ServingOptions
from warpcore.server.server_settings import ServerSettings
from warpcore.server.version import VERSION


def bound(address: str, port: int) -> str:
    """The address as bound: with the port the system chose for ":0"."""
    return address if address.startswith("unix:") else f"{address.rsplit(':', 1)[0]}:{port}"


def serving_line(
    settings: ServerSettings, options: ServingOptions, ports: Sequence[int], http: int | None, metrics: int | None
) -> str:
    """The line that says the server serves: its version, each door's address as bound (gRPC's `ports`, the HTTP
    door's and the metrics' ports), where the models are, and what guards the doors."""
    doors = ", ".join(map(bound, settings.listen, ports))
    if metrics is not None:
        doors += f", models under {settings.models_path}; metrics on {host_port(settings.metrics_host, metrics)}"
    else:
        doors += f", models under {settings.models_path}"
    if http is not None:
        doors += f"; HTTP (OpenAI, Anthropic) on {host_port(settings.http_host, http)}"
    return f"warpcore-server {VERSION} serving on {doors}; event loop {settings.event_loop}; {_guards(options)}"


def _guards(options: ServingOptions) -> str:
    """What guards the doors, for an operator to see at a glance: the token, TLS, and whether a client may name API
    settings of its own (--api-overrides)."""
    token = "token required" if options.token else "no token"
    tls = "plaintext" if options.tls is None else ("mTLS" if options.tls.client_ca is not None else "TLS")
    overrides = "allowed" if options.api_overrides.allow else "refused"
    return f"{token}, {tls}, client API settings {overrides}"


def exposure_warning(
    settings: ServerSettings, options: ServingOptions, ports: Sequence[int], http: int | None
) -> str | None:
    """A warning when a door listens beyond this machine with no token and no client certificates required: what
    anyone who reaches it may do, the features the settings turn on included. None when no door does."""
    if options.token or (options.tls is not None and options.tls.client_ca is not None):
        return None
    open_doors = [f"gRPC on {bound(address, port)}" for address, port in zip(settings.listen, ports, strict=True)]
    if http is not None:
        open_doors.append(f"HTTP on {host_port(settings.http_host, http)}")
    open_doors = [door for door in open_doors if not is_loopback(door.partition(" on ")[2])]
    if not open_doors:
        return None
    may = ["generate with every model (the hosted ones on the server's API keys)", "load and unload models"]
    if options.pulls is not None:
        may.append("pull models from the Hub (--allow-pull)")
    if options.api_overrides.allow:
        may.append("send API settings of their own (--api-overrides)")
    return (
        f"no token, and {', '.join(open_doors)} listen beyond this machine: whoever reaches them may"
        f" {', '.join(may[:-1])} and {may[-1]}; set WARPCORE_TOKEN or --token-file, or require client certificates"
    )
