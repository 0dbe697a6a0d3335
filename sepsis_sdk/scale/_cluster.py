"""Connecting to a Ray cluster or starting a local one, with errors that name the address.

``ray`` is imported here, inside functions, never at module import.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from sepsis_sdk._lazy import require
from sepsis_sdk.errors import ClusterError


def ray_module() -> Any:
    """The ``ray`` module, or :class:`~sepsis_sdk.errors.MissingDependencyError` naming the ``[ray]`` extra."""
    return require("ray", "ray", "running on Ray")


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` or ``ray://host:port`` address; None for ``auto``/``local``."""
    if address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at ``address``.

    ``ray.init`` on an unreachable GCS retries for minutes with log lines only; one TCP connect with a
    short timeout turns that into one clear error.

    Raises:
        ClusterError: no server answers at ``address`` within ``timeout_s``.
    """
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address!r} ({type(exc).__name__}: {exc}); start one with "
            "`ray start --head` on that host, check the address and port, or leave the address unset to "
            "start a local cluster"
        ) from None


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    namespace: str | None = "sepsis-sdk",
    probe_timeout_s: float = 5.0,
    **init_kwargs: Any,
) -> bool:
    """Join the Ray cluster at ``address`` or start a local one; reuse a connection already open.

    Args:
        address: ``"auto"`` (a cluster started with ``ray start`` on this host), ``"host:6379"``, a Ray
            Client URL ``"ray://host:10001"``, ``"local"`` (always start a new local cluster) or None
            (``$RAY_ADDRESS`` when set, else a new local cluster).
        num_cpus: CPUs of a local cluster (ignored when joining one).
        namespace: the Ray namespace, so named actors (concurrency limits) are shared by the SDK's runs.
        probe_timeout_s: how long to wait for the address to answer before giving up.
        **init_kwargs: passed to ``ray.init``.

    Returns:
        True when this call started or joined the cluster (the caller then owns ``ray.shutdown``), False
        when Ray was already initialised in this process.

    Raises:
        ClusterError: the cluster cannot be reached; the message names the address.
    """
    ray = ray_module()
    addr = address if address is not None else os.environ.get("RAY_ADDRESS") or None
    if addr not in (None, "local"):
        probe(addr, probe_timeout_s)  # also when already connected: a wrong address is an error either way
    if ray.is_initialized():
        return False
    opts: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "namespace": namespace,
        **init_kwargs,
    }
    if addr in (None, "local"):
        opts["num_cpus"] = num_cpus
        addr = "local"
    try:
        ray.init(address=addr, **opts)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        # "auto" with no cluster raises ConnectionError; ray:// without ray[client] raises ValueError
        raise ClusterError(f"cannot connect to the Ray cluster at {addr!r}: {exc}") from None
    return True


__all__ = ["connect", "probe", "ray_module"]
