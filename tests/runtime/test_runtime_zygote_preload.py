"""The zygote's preload of a module that runs an event loop and threads at import (SPEC §4,
issue 9): the zygote keeps working — its SIGCHLD wakeup survives the module's loop, threads the
import started and ended do not count as running, the preload reports the module loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

MODULE = '''
import asyncio
import signal
import threading


async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)  # takes the process's wakeup fd...
    return await loop.run_in_executor(None, sum, [1, 2])  # ...and a default-executor thread


VALUE = asyncio.run(main())  # closing the loop clears the wakeup fd
_t = threading.Thread(target=lambda: None)
_t.start()
_t.join()
'''

SCRIPT = '''
import json, signal, socket, sys
sys.path.insert(0, sys.argv[1])
from fnserve.runtime import zygote

ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
z = zygote.Zygote(theirs, "", use_uvloop=False, standby=False)
z.watch_signals()
z.preload({"op": "preload", "id": 1, "names": ["fnserve_loop_at_import"]})
reply = json.loads(ours.recv(1 << 20))
reply["wakeup_fd_kept"] = signal.set_wakeup_fd(-1) == z.wake[1]
print(json.dumps(reply))
'''


def test_zygote_preload_of_a_module_running_a_loop_and_threads_at_import(tmp_path: Path) -> None:
    (tmp_path / "fnserve_loop_at_import.py").write_text(MODULE)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    assert reply["op"] == "preloaded" and reply["id"] == 1
    assert reply["preloaded"] == ["fnserve_loop_at_import"] and reply["failed"] == {}
    assert reply["threads"] == 1  # the executor and the module's thread are gone: forking stays safe
    assert reply["wakeup_fd_kept"]  # children's exits still wake the zygote
