"""Runs one spahgc command with --json for the cohort workflow and writes its JSON line to RECORD.

    run_spahgc.py RECORD spahgc predict ... --json

spahgc's stderr passes through (the rule sends it to the job's log). Exit codes 2 (bad input) and 3
(unreadable slide) are the slide's own problem, which a retry would meet again: RECORD then holds
spahgc's failure line plus the end of its stderr, and this script succeeds, so the slide fails
alone. Any other failure (1, a signal, the out-of-memory killer) fails the job, for Snakemake to
retry it.
"""

import json
import shlex
import subprocess
import sys

PERMANENT = (2, 3)
STDERR_LINES = 20


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    record_path, command = sys.argv[1], sys.argv[2:]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode not in (0, *PERMANENT):
        sys.exit(f"run_spahgc: {shlex.join(command)} failed with {describe(done.returncode)}")
    lines = done.stdout.strip().splitlines()
    try:
        record = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        sys.exit(f"run_spahgc: {command[0]} exited {done.returncode} without a JSON line on stdout")
    if done.returncode != 0:
        record["stderr"] = "\n".join(done.stderr.strip().splitlines()[-STDERR_LINES:])
    with open(record_path, "w") as f:
        json.dump(record, f)
        f.write("\n")


def describe(returncode):
    return f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"


if __name__ == "__main__":
    main()
