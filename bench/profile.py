"""Profile SpaceAI's request path under load: where the GIL time goes.

    .venv/bin/python bench/profile.py            # non-streaming, 32 connections
    .venv/bin/python bench/profile.py --stream   # 100-chunk streams

Starts the fake upstream and `spaceai serve` as bench/run.py does, drives it with wrk, records
the server with `py-spy record --gil` (pip install py-spy) and prints the functions that held
the GIL longest, by own time and by total time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import run  # noqa: E402


def top(raw: Path, n: int) -> str:
    own: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    out = [f"{samples} samples"]
    out += [f"{c / samples * 100:5.1f}% own   {f}" for f, c in own.most_common(n)]
    out += [""] + [f"{c / samples * 100:5.1f}% total {f}" for f, c in total.most_common(n)
                   if "click/" not in f and "<module>" not in f]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--native", action="store_true",
                    help="include C frames (what a Python line spends its time in)")
    ap.add_argument("--grep", help="print only the stacks through frames containing this")
    args = ap.parse_args()
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        sys.exit("py-spy is needed: .venv/bin/pip install py-spy")
    upstream = run.Upstream()
    gw = run.SpaceAI(upstream)
    out = Path(tempfile.mkdtemp()) / "profile.txt"
    try:
        url = f"{gw.base}/v1/chat/completions"
        body = run.chat_body(args.stream)
        run.wrk(url, body, gw.key, 8, 1)
        script = run.WRK_LUA % (json.dumps(json.dumps(body)),
                                f'wrk.headers["Authorization"] = "Bearer {gw.key}"')
        lua = out.with_suffix(".lua")
        lua.write_text(script)
        load = subprocess.Popen(["wrk", "-t1", "-c32", f"-d{args.seconds + 2}s", "-s", str(lua),
                                 url], stdout=subprocess.DEVNULL)
        time.sleep(1)
        subprocess.run([str(py_spy), "record", "-p", str(gw.proc.pid), "-d", str(args.seconds),
                        "-r", "300", "--gil", "-f", "raw", "-o", str(out)]
                       + (["--native"] if args.native else []),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        load.wait()
        if args.grep:
            lines = [x for x in out.read_text().splitlines() if args.grep in x]
            print("\n".join(sorted(lines, key=lambda x: -int(x.rpartition(" ")[2]))[:args.top]))
        else:
            print(top(out, args.top))
    finally:
        gw.close()
        run.stop(upstream.proc)
        if out.exists():
            os.unlink(out)


if __name__ == "__main__":
    main()
