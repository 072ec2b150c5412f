#!/usr/bin/env python3
"""Helpers for scripts/bench (not meant to be run by hand).

  measure.py run --out FILE --key KEY --run N --log LOG [--rss] [--context-bytes] [--mark REGEX]
                 [--timeout SECONDS] -- CMD... [--then CMD...]
      Runs the command(s) one after the other, stdin from /dev/null, stdout and stderr
      appended to LOG, and appends one JSON line to FILE with
        seconds         wall-clock time of all the commands, from spawn to reap
        exit            the exit code (137 when --timeout killed the command)
        rss_kib         with --rss: the largest max RSS of them, measured by GNU time (its own
                        footprint is about 1 MiB; wait4 from Python would report Python's,
                        since a process's max RSS survives exec)
        marked_seconds  with --mark: seconds until the first output that matches REGEX
        context_bytes   with --context-bytes: the build context size the command printed
                        (devbox's "build context N", the classic builder's "Sending build
                        context to Docker daemon N")
      Exits with the first failing command's exit code (the rest are not run).
  measure.py alternate --out FILE --log LOG --runs N --key KEY -- CMD... --vs --key KEY -- CMD...
      Runs the two commands alternately (the first one first in odd runs, the other in even
      runs), N times each, back to back in this one process, and records each run as `run`
      does (no RSS). For short commands, where starting a recorder per run would disturb them.
  measure.py value --out FILE --key KEY --value V [--unit U]
      Appends a plain value (no timing) to FILE.
  measure.py ports N
      Prints N TCP ports on 127.0.0.1 that are free right now.
  measure.py tree DIR COUNT
      Writes COUNT small text files (200 B to 4 kB) under DIR, 1000 per folder.
"""
import json
import os
import random
import re
import signal
import socket
import sys
import tempfile
import threading
import time

UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
CONTEXT_PATTERNS = [
    re.compile(r"build context ([0-9.]+) ?(B|kB|KB|MB|GB|TB)\b"),
    re.compile(r"Sending build context to Docker daemon\s+([0-9.]+) ?(B|kB|KB|MB|GB|TB)\b"),
]


def run_one(argv, log, rss, mark=None, timeout=None):
    """Runs argv; returns (seconds, max RSS KiB or None, exit code, output, seconds until
    the first line of output that matches `mark`, or None)."""
    rss_file = None
    if rss:
        rss_file = tempfile.NamedTemporaryFile(prefix="bench-rss-", delete=False)
        rss_file.close()
        argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *argv]
    with tempfile.TemporaryFile() as out, open(os.devnull, "rb") as null:
        actions = [
            (os.POSIX_SPAWN_DUP2, null.fileno(), 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
        ]
        marked = None
        if mark:
            # Read the output as it comes, to time the line that matches.
            read_end, write_end = os.pipe()
            actions[1:] = [(os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_DUP2, write_end, 2),
                           (os.POSIX_SPAWN_CLOSE, read_end)]
        started = time.perf_counter()
        try:
            pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
        except OSError as error:
            return 0.0, None, 127, f"cannot run {argv[0]}: {error}\n", None
        timer = None
        if timeout:
            # The command is killed when it runs too long (exit code 137 is recorded).
            def kill():
                try:
                    os.kill(pid, signal.SIGKILL)
                    log.write(f"[killed after {timeout} s]\n")
                except ProcessLookupError:
                    pass
            timer = threading.Timer(timeout, kill)
            timer.start()
        if mark:
            os.close(write_end)
            pending = b""
            with os.fdopen(read_end, "rb", buffering=0) as pipe:
                while chunk := pipe.read(65536):
                    out.write(chunk)
                    if marked is None:
                        pending += chunk
                        if re.search(mark.encode(), pending):
                            marked = time.perf_counter() - started
                        pending = pending[-256:]
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - started
        if timer:
            timer.cancel()
        out.seek(0)
        text = out.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    maxrss = None
    if rss_file:
        with open(rss_file.name) as f:
            numbers = [l.strip() for l in f if l.strip().isdigit()]
        os.unlink(rss_file.name)
        maxrss = int(numbers[-1]) if numbers else None
    log.write(f"$ {' '.join(argv)}\n{text}")
    log.write(f"[{elapsed:.4f} s, max RSS {maxrss} KiB, exit {code}, marked {marked}]\n")
    return elapsed, maxrss, code, text, marked


def context_bytes(text):
    found = None
    for line in text.replace("\r", "\n").splitlines():
        for pattern in CONTEXT_PATTERNS:
            match = pattern.search(line)
            if match:
                found = round(float(match.group(1)) * UNITS[match.group(2)])
    return found


def cmd_run(args):
    opts = {"--out": None, "--key": None, "--run": "0", "--log": os.devnull, "--mark": None,
            "--timeout": None}
    flags = set()
    while args and args[0] != "--":
        name = args.pop(0)
        if name in ("--context-bytes", "--rss"):
            flags.add(name)
        else:
            opts[name] = args.pop(0)
    args.pop(0)
    commands, current = [], []
    for arg in args:
        if arg == "--then":
            commands.append(current)
            current = []
        else:
            current.append(arg)
    commands.append(current)

    total, rss, code, texts, marked = 0.0, None, 0, [], None
    with open(opts["--log"], "a") as log:
        for argv in commands:
            timeout = float(opts["--timeout"]) if opts["--timeout"] else None
            elapsed, maxrss, code, text, mark_at = run_one(argv, log, "--rss" in flags,
                                                           opts["--mark"], timeout)
            if marked is None and mark_at is not None:
                marked = total + mark_at
            total += elapsed
            if maxrss is not None:
                rss = max(rss or 0, maxrss)
            texts.append(text)
            if code != 0:
                break
    record = {
        "key": opts["--key"],
        "run": int(opts["--run"]),
        "seconds": total,
        "rss_kib": rss,
        "exit": code,
    }
    if opts["--mark"]:
        record["marked_seconds"] = marked
    if "--context-bytes" in flags:
        record["context_bytes"] = context_bytes("".join(texts))
    with open(opts["--out"], "a") as out:
        out.write(json.dumps(record) + "\n")
    if code != 0:
        sys.stderr.write(f"bench: `{' '.join(argv)}` failed (exit {code}); its last lines:\n")
        sys.stderr.write("".join("  | " + l + "\n" for l in texts[-1].splitlines()[-15:]))
    return code


def cmd_alternate(args):
    opts = {}
    while args[0] != "--key":
        name = args.pop(0)
        opts[name] = args.pop(0)
    sides, current = [], None
    for arg in args:
        if current is not None and current.get("argv") is None and arg == "--":
            current["argv"] = []
        elif arg == "--vs":
            current = None
        elif current is None and arg == "--key":
            current = {"key": None, "argv": None}
            sides.append(current)
        elif current is not None and current["key"] is None:
            current["key"] = arg
        else:
            current["argv"].append(arg)
    runs = int(opts["--runs"])
    code = 0
    with open(opts["--log"], "a") as log, open(opts["--out"], "a") as out:
        for run in range(1, runs + 1):
            order = sides if run % 2 else list(reversed(sides))
            for side in order:
                elapsed, _, code, text, _ = run_one(side["argv"], log, False)
                out.write(json.dumps({"key": side["key"], "run": run, "seconds": elapsed,
                                      "rss_kib": None, "exit": code}) + "\n")
                if code != 0:
                    sys.stderr.write(f"bench: `{' '.join(side['argv'])}` failed (exit {code}):\n{text}")
                    return code
    return code


def cmd_value(args):
    opts = dict(zip(args[::2], args[1::2]))
    record = {"key": opts["--key"], "value": float(opts["--value"]), "unit": opts.get("--unit", "")}
    with open(opts["--out"], "a") as out:
        out.write(json.dumps(record) + "\n")
    return 0


def cmd_ports(args):
    sockets = []
    for _ in range(int(args[0])):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in sockets))
    for s in sockets:
        s.close()
    return 0


def cmd_tree(args):
    root, count = args[0], int(args[1])
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz     \n_=()0123456789"
    for i in range(count):
        folder = os.path.join(root, f"pkg{i // 1000:02d}")
        if i % 1000 == 0:
            os.makedirs(folder, exist_ok=True)
        size = rng.randint(200, 4000)
        body = "".join(rng.choices(alphabet, k=size))
        with open(os.path.join(folder, f"module_{i % 1000:03d}.py"), "w") as f:
            f.write(f"# file {i}\n{body}\n")
    return 0


def main():
    command, args = sys.argv[1], sys.argv[2:]
    return {"run": cmd_run, "alternate": cmd_alternate, "value": cmd_value, "ports": cmd_ports, "tree": cmd_tree}[command](args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # Ctrl-C reached the command too; scripts/bench's trap cleans up.
        sys.exit(130)
