"""Worker processes for functions: start, scale, limit, watch, restart, reload, stop. Never parses HTTP.

Public API (the front server, ``fnserve dev`` and ``fnserve start`` use only this)::

    from fnserve.supervisor import Supervisor, WorkerTarget, ZygoteLauncher
    from fnserve.server.upstream import forward

    targets = [WorkerTarget.from_function(f, project.root, env=config.function_env(),
                                          limits=lambda kind, fid=f.id: config.limits_for(fid, asgi=kind == "asgi"))
               for f in project.functions]        # limits: fnserve.config.FunctionLimits (or kind -> it)
    async with Supervisor(targets, policy="autoscale", launcher=ZygoteLauncher(), heartbeat_timeout=30,
                          load_retry=60, max_requests=0, max_failures=10) as sup:   # start's defaults
        await sup.serve(function, scope, receive, send, forward)   # queue, scaling, maxDuration, memory
        # or, lower level: async with await sup.lease(function) as lease: await forward(lease.connection, ...)
        await sup.restart({"api/hello.py"})          # a file changed: graceful replace
        await sup.update(new_targets)                # functions added / removed / changed
        sup.status()                                 # instances, queue, cold starts per function

    # fnserve start's direct path (Supervisor(..., direct=True)): the front passes client connections
    sup.set_direct_plan(lambda function_id: plan)    # plan dict or None, sent to instances after READY
    sup.on_hand_back = serve_rest                    # (sock, data): a worker gave a connection back
    sup.on_direct_report = log_requests              # (function_id, pid, [[id, method, path, status, ms]])
    if sup.pass_connection(function, sock, head):    # sync; False: serve it through the frames path
        sock.close()
    sup.refresh_direct_plans()                       # after a site reload
    sup.direct_stats()                               # {"passed", "handed_back", "closed", "lost", "open"}

Dev keeps one instance per function (``policy="single"``, the default) and may use ``acquire``;
its limits (``max_duration``, ``memory``) are enforced by ``serve`` exactly as in production.
Errors raised are in ``fnserve.errors``: ``FunctionLoadFailed`` (500), ``WorkerCrashed`` (502),
``MemoryExceeded`` (502), ``HeartbeatTimeout`` (502), ``Overloaded`` (503 + Retry-After), ``WorkerStartTimeout`` (503),
``DurationExceeded`` (504), ``FunctionFailed`` (500), ``WorkerError``.
"""

from .core import RestartResult, Supervisor
from .function_pool import FunctionPool, Lease
from .handoff import DIRECT_MAX_PACKET, DirectChannels
from .launch import LAUNCHERS, Launcher, SpawnLauncher, WorkerProcess
from .leasing import Forward, Leasing
from .limits import MEMORY_LIMITERS, MemoryLimiter, detect_memory_limiter
from .maintenance import Maintenance
from .memory import MemoryGuard
from .pools import InstancePools
from .scaling import POLICIES, AutoscalePolicy, PoolView, ScaleDecision, ScalingPolicy, SingleInstancePolicy
from .starter import InstanceStarter
from .target import WorkerTarget, function_env, function_spec, interpreter_env
from .zygote_launcher import ForkLauncher, ZygoteLauncher, preload_modules

LAUNCHERS["zygote"] = ZygoteLauncher

__all__ = [
    "DIRECT_MAX_PACKET", "DirectChannels", "LAUNCHERS", "MEMORY_LIMITERS", "POLICIES", "AutoscalePolicy", "ForkLauncher", "Forward", "FunctionPool",
    "InstancePools", "InstanceStarter", "Launcher", "Lease", "Leasing", "Maintenance", "MemoryGuard", "MemoryLimiter",
    "PoolView", "RestartResult", "ScaleDecision", "ScalingPolicy", "SingleInstancePolicy", "SpawnLauncher",
    "Supervisor", "WorkerProcess", "WorkerTarget", "ZygoteLauncher", "detect_memory_limiter", "function_env",
    "function_spec", "interpreter_env", "preload_modules",
]
