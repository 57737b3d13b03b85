"""Helpers of the fixture functions (not a route: its name starts with "_"): processes a function
starts that outlive its request. Each pid is appended to $FAULTS_DIR/pids (the test kills what is
left there at the end)."""

import os
import subprocess


def record(pid):
    with open(os.path.join(os.environ["FAULTS_DIR"], "pids"), "a") as f:
        f.write("%d\n" % pid)
    return pid


def orphan(seconds=30):
    """Double-fork: fork, the child forks again and exits, the grandchild execs `sleep` (an orphan
    of the instance; it stays in the instance's process group: no setsid). Returns its pid once
    it runs `sleep`."""
    read, write = os.pipe()  # the grandchild's pid
    exec_read, exec_write = os.pipe()  # close-on-exec: EOF once the grandchild has exec'd
    child = os.fork()
    if child == 0:
        try:
            grandchild = os.fork()
            if grandchild == 0:
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.execvp("sleep", ["sleep", str(seconds)])
            os.write(write, b"%d" % grandchild)
        finally:
            os._exit(0)
    os.close(write)
    os.close(exec_write)
    pid = int(os.read(read, 32))
    os.read(exec_read, 1)
    os.close(read)
    os.close(exec_read)
    os.waitpid(child, 0)
    return record(pid)


def child(seconds=30):
    """A direct child `sleep` the function never waits for; it shares the instance's stdout and
    stderr (pipes fnserve reads). Returns its pid."""
    return record(subprocess.Popen(["sleep", str(seconds)], stdin=subprocess.DEVNULL).pid)
