"""``fnserve start`` against the same apps served natively (issue 6 acceptance, "bench/throughput.py").

For the FastAPI and Flask functions of ``examples/showcase``: requests/s with ``--conns``
keep-alive connections, and p50/p99 latency with one connection, through ``fnserve start``
(access log on, written to a file as in production; request ids, metrics) and natively — FastAPI
on bare uvicorn (uvloop + httptools), Flask on gunicorn sync — with the same number of function
processes (``--processes``, default 1: uvicorn ``--workers``, gunicorn ``-w``, fnserve
``--workers-per-function``; fnserve's front process comes on top). Both servers run at once and
are measured in interleaved slices A B B A (the shared machine's drift hits both sides). Printed
with ratios; goal: fnserve ≥ 0.8× native throughput.

The load generator is ``bench/dev.py``'s (imported, not copied): raw keep-alive sockets on uvloop
in their own process. 127.0.0.1 only; fixed slices (``--seconds``) and a time cap (``--cap``):
every process started is killed at the end; total < 3 min with the defaults.

    .venv/bin/python bench/throughput.py [--seconds 2] [--conns 8] [--processes 1]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dev as bench

PY = sys.executable
APPS = {  # name: (path, native server)
    "fastapi": ("/api/fastapi_app/items", "uvicorn"),
    "flask": ("/api/flask_app", "gunicorn sync"),
}


def native(name: str, port: int, processes: int, cwd: Path) -> subprocess.Popen:
    if name == "fastapi":
        workers = ["--workers", str(processes)] if processes > 1 else []
        return bench.start([PY, "-m", "uvicorn", "api.fastapi_app:app", "--port", str(port), "--loop", "uvloop",
                            "--http", "httptools", "--no-access-log", "--log-level", "warning", *workers], cwd)
    return bench.start([PY, "-m", "gunicorn", "-w", str(processes), "-k", "sync", "-b", f"127.0.0.1:{port}",
                        "--log-level", "warning", "api.flask_app:app"], cwd)


def fnserve_start(project: Path, processes: int, log: Path) -> tuple[subprocess.Popen, int]:
    """``fnserve start`` on ``project``; returns the process and its port (from its log)."""
    out = log.open("w")
    proc = subprocess.Popen(
        [PY, "-m", "fnserve", "start", str(project), "--port", "0", "--no-install",
         "--workers-per-function", str(processes)],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"fnserve start: http://127\.0\.0\.1:(\d+)", log.read_text())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    bench.stop(proc)
    raise RuntimeError("fnserve start printed no URL:\n" + log.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="measured seconds per slice")
    ap.add_argument("--conns", type=int, default=8, help="keep-alive connections for throughput")
    ap.add_argument("--processes", type=int, default=1, help="function processes on each side")
    ap.add_argument("--cap", type=float, default=170.0, help="stop starting new measurements after this many s")
    opts = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="fnserve-throughput-"))
    project = tmp / "showcase"
    shutil.copytree(bench.SHOWCASE, project, ignore=shutil.ignore_patterns(".fnserve", "__pycache__"))
    rows = []
    log = tmp / "start.log"
    server, port = fnserve_start(project, opts.processes, log)
    try:
        for name, (path, how) in APPS.items():
            if time.monotonic() - began > opts.cap:
                print(f"  time cap reached: {name} not measured", file=sys.stderr)
                break
            bench.wait_http(port, path)
            nport = bench.free_port()
            proc = native(name, nport, opts.processes, project)
            try:
                bench.wait_http(nport, path)
                nat_t, fn_t = bench.interleaved(nport, port, path, opts.conns, opts.seconds)
                nat_l, fn_l = bench.interleaved(nport, port, path, 1, opts.seconds / 2)
            finally:
                bench.stop(proc)
            rows.append((name, how, nat_t, nat_l, fn_t, fn_l))
            print(f"  measured {name}: native {nat_t['rps']:.0f} rps, fnserve start {fn_t['rps']:.0f} rps",
                  file=sys.stderr, flush=True)
    finally:
        bench.stop(server)
        access_lines = sum(1 for line in log.read_text().splitlines() if re.search(r" GET /api/\S+ \d{3} ", line))
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"fnserve start vs native, {opts.processes} function process(es) each (fnserve adds its front "
          f"process); throughput: {opts.conns} keep-alive connections; latency: 1 connection; "
          f"slices of {opts.seconds:g} s interleaved A B B A")
    print(f"{'app':8} {'native server':14} {'native rps':>10} {'start rps':>9} {'ratio':>6} "
          f"{'nat p50':>8} {'st p50':>8} {'nat p99':>8} {'st p99':>8}  (ms)")
    for name, how, nt, nl, st, sl in rows:
        print(f"{name:8} {how:14} {nt['rps']:10.0f} {st['rps']:9.0f} {st['rps'] / nt['rps']:5.2f}x "
              f"{nl['p50']:8.3f} {sl['p50']:8.3f} {nl['p99']:8.3f} {sl['p99']:8.3f}")
    for name, _how, *runs in rows:
        bad = {k: v for run in runs for k, v in run["errors"].items()}
        if bad:
            print(f"  WARNING {name}: non-200 answers {bad}")
    print(f"(fnserve start wrote {access_lines} access log lines; goal: ratio >= 0.80; "
          f"total {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    main()
