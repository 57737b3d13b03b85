"""Worker processes for functions: start lazily, watch, restart, reload, stop. Never parses HTTP.

Public API (the front server and ``fnserve dev`` use only this)::

    from fnserve.supervisor import Supervisor, WorkerTarget
    from fnserve.server.upstream import forward

    targets = [WorkerTarget.from_function(f, project.root, env=config.function_env()) for f in project.functions]
    async with Supervisor(targets) as supervisor:
        connection = await supervisor.acquire(function)    # or function id
        await forward(connection, scope, receive, send)
        await supervisor.restart({"api/hello.py"})          # a file changed: graceful replace
        await supervisor.update(new_targets)                # functions added / removed / changed

Errors raised are in ``fnserve.errors``: ``FunctionLoadFailed`` (500), ``WorkerCrashed`` (502),
``WorkerStartTimeout`` (503), ``FunctionFailed`` (500), ``WorkerError``.
"""

from .core import FunctionPool, RestartResult, Supervisor
from .launch import LAUNCHERS, Launcher, SpawnLauncher, WorkerProcess
from .target import WorkerTarget, function_env, function_spec, interpreter_env

__all__ = [
    "LAUNCHERS",
    "FunctionPool",
    "Launcher",
    "RestartResult",
    "SpawnLauncher",
    "Supervisor",
    "WorkerProcess",
    "WorkerTarget",
    "function_env",
    "function_spec",
    "interpreter_env",
]
