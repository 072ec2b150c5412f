#!/usr/bin/env python3
"""Print, as a JSON object, what sourcing a bash script changes in the environment.

    agx-env.py /opt/Algoryx/AGX-<version>/setup_env.bash > /etc/devbox/agx-env.json

The script is sourced by bash; the environment right before and right after it
is compared. New and changed variables are reported with their new values;
shell bookkeeping (SHLVL, _, PWD, OLDPWD) is ignored. Without an argument it
prints {}. devbox turns the object into ENV instructions of the final image.
"""
import json
import os
import subprocess
import sys
import tempfile

IGNORED = {"SHLVL", "_", "PWD", "OLDPWD"}


def read_env(path):
    with open(path, "rb") as f:
        data = f.read()
    env = {}
    for entry in data.split(b"\0"):
        if not entry or b"=" not in entry:
            continue
        key, _, value = entry.partition(b"=")
        env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return env


def main(argv):
    if len(argv) < 2 or not argv[1]:
        print("{}")
        return 0
    script = argv[1]
    if not os.path.isfile(script):
        print(f"agx-env.py: {script} not found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        before = os.path.join(tmp, "before")
        after = os.path.join(tmp, "after")
        # Same shell for both snapshots, so only the script's own changes differ.
        # The script's output goes to stderr to keep stdout for the JSON.
        cmd = 'env -0 >"$2" && . "$1" >&2 && env -0 >"$3"'
        subprocess.run(
            ["bash", "-c", cmd, "agx-env", script, before, after],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr,
            cwd=os.path.dirname(os.path.abspath(script)),
        )
        env_before = read_env(before)
        env_after = read_env(after)
    changed = {
        key: value
        for key, value in sorted(env_after.items())
        if key not in IGNORED and env_before.get(key) != value
    }
    removed = sorted(k for k in env_before if k not in env_after and k not in IGNORED)
    if removed:
        print(f"agx-env.py: note: {script} unsets {', '.join(removed)} (not recorded)", file=sys.stderr)
    json.dump(changed, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
