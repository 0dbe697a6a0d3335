"""sepsis_sdk.scale: run the SDK's fan-out work on Ray (extra ``[ray]``; ``ray`` is imported lazily).

- :class:`RayExecutor`: Ray tasks behind the evaluation ``Executor`` protocol (``map`` in order,
  ``map_unordered``), shared inputs put once, bounded in-flight work, retries when a worker dies;
- :class:`RayActorExecutor`: long-lived actors, one expensive object (a world model, a local LLM) each;
- :class:`ConcurrencyLimit` and :func:`limited`: one cap on concurrent calls to a hosted model or judge,
  however many workers call it;
- :class:`DistributedPolicy`: any policy's decisions in chunks over the cluster (agent sweeps: evaluation
  chunks, the exact 713-state value, Monte-Carlo episodes), or one policy per actor from a factory;
- :func:`connect`: join a cluster (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``) or start a local one;
  an unreachable address raises :class:`~sepsis_sdk.errors.ClusterError` naming it.

Where each part runs, and the measured numbers: ``docs/scale.md``.
"""

from __future__ import annotations

from sepsis_sdk._lazy import lazy_getattr

_EXPORTS = {
    "ConcurrencyLimit": "sepsis_sdk.scale._limit",
    "LIMITED_METHODS": "sepsis_sdk.scale._limit",
    "DistributedPolicy": "sepsis_sdk.scale._policy",
    "RayActorExecutor": "sepsis_sdk.scale._executor",
    "RayExecutor": "sepsis_sdk.scale._executor",
    "connect": "sepsis_sdk.scale._cluster",
    "limited": "sepsis_sdk.scale._limit",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr("sepsis_sdk.scale", _EXPORTS, globals())
