"""An agent's loop with the Python SDK: run generated code in a sandbox, snapshot the work,
then branch: two sandboxes restored from the snapshot try two different next steps.

    FLOTILLA_ENDPOINT=http://127.0.0.1:7100 FLOTILLA_TOKEN=flt_… python agent.py

Needs the flotilla/python image (`flotilla image build-base python`).
"""

import flotilla

# What a model might have written: step 1 prepares data, then two candidate step 2s.
STEP_1 = """
import json
rows = [{"city": c, "temp": t} for c, t in [("Oslo", 4), ("Rome", 19), ("Lima", 17)]]
json.dump(rows, open("/work/rows.json", "w"))
print("prepared", len(rows), "rows")
"""
CANDIDATES = {
    "warmest": "import json; rows = json.load(open('/work/rows.json')); "
               "print(max(rows, key=lambda r: r['temp'])['city'])",
    "mean": "import json; rows = json.load(open('/work/rows.json')); "
            "print(sum(r['temp'] for r in rows) / len(rows))",
}


def run(sb: flotilla.Sandbox, code: str) -> str:
    """Runs Python code in the sandbox; its stdout, or the error it raised."""
    sb.files.write("/work/step.py", code)
    p = sb.exec("python3", "/work/step.py", timeout=60)
    out, err = p.stdout.read(), p.stderr.read()
    if p.wait() != 0:
        raise RuntimeError("generated code failed: " + err)
    return out.strip()


def main() -> None:
    sb = flotilla.Sandbox.create(image="flotilla/python", timeout=300, tags={"example": "agent"})
    try:
        print("step 1:", run(sb, STEP_1))
        snap = sb.snapshot_filesystem()
    finally:
        sb.terminate()
    # Each branch starts from the same files, on whichever node has room.
    for name, code in CANDIDATES.items():
        branch = flotilla.Sandbox.create(from_snapshot=snap, timeout=120, tags={"example": "agent"})
        try:
            print("branch %s:" % name, run(branch, code))
        finally:
            branch.terminate()
    flotilla.remove_snapshot(snap.id)


if __name__ == "__main__":
    main()
