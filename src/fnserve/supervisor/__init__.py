"""Worker processes for functions: start, scale, limit, watch, restart, reload, stop. Never parses HTTP.

Public API (the front server, ``fnserve dev`` and ``fnserve start`` use only this)::

    from fnserve.supervisor import Supervisor, WorkerTarget, ZygoteLauncher
    from fnserve.server.upstream import forward

    targets = [WorkerTarget.from_function(f, project.root, env=config.function_env(),
                                          limits=lambda kind, fid=f.id: config.limits_for(fid, asgi=kind == "asgi"))
               for f in project.functions]
    async with Supervisor(targets, policy="autoscale", launcher=ZygoteLauncher(), heartbeat_timeout=10) as sup:
        await sup.serve(function, scope, receive, send, forward)   # queue, scaling, maxDuration, memory
        # or, lower level: async with await sup.lease(function) as lease: await forward(lease.connection, ...)
        await sup.restart({"api/hello.py"})          # a file changed: graceful replace
        await sup.update(new_targets)                # functions added / removed / changed
        sup.status()                                 # instances, queue, cold starts per function

Dev keeps one instance per function (``policy="single"``, the default) and may use ``acquire``.
Errors raised are in ``fnserve.errors``: ``FunctionLoadFailed`` (500), ``WorkerCrashed`` (502),
``MemoryExceeded`` (502), ``Overloaded`` (503 + Retry-After), ``WorkerStartTimeout`` (503),
``DurationExceeded`` (504), ``FunctionFailed`` (500), ``WorkerError``.
"""

from .core import RestartResult, Supervisor
from .launch import LAUNCHERS, Launcher, SpawnLauncher, WorkerProcess
from .limits import MEMORY_LIMITERS, MemoryLimiter, detect_memory_limiter
from .pool import FunctionPool, Lease
from .scaling import POLICIES, AutoscalePolicy, Limits, PoolView, ScaleDecision, ScalingPolicy, SingleInstancePolicy
from .target import WorkerTarget, function_env, function_spec, interpreter_env
from .zygote import ForkLauncher, ZygoteLauncher, preload_modules

LAUNCHERS["zygote"] = ZygoteLauncher

__all__ = [
    "LAUNCHERS", "MEMORY_LIMITERS", "POLICIES", "AutoscalePolicy", "ForkLauncher", "FunctionPool", "Launcher",
    "Lease", "Limits", "MemoryLimiter", "PoolView", "RestartResult", "ScaleDecision", "ScalingPolicy",
    "SingleInstancePolicy", "SpawnLauncher", "Supervisor", "WorkerProcess", "WorkerTarget", "ZygoteLauncher",
    "detect_memory_limiter", "function_env", "function_spec", "interpreter_env", "preload_modules",
]
