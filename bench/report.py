"""Run every benchmark and gather their tables and plots into one Markdown report.

    .venv/bin/python bench/report.py [--quick] [--only ingest,invoke]

Each bench script prints Markdown and writes bench/out/<name>.md (plus any PNG it makes); every
figure in it is a ratio against a baseline measured in the same run. The report is
bench/out/REPORT.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

# (name, script, arguments for a full run, arguments for --quick)
BENCHES = [
    ("ingest", "ingest.py", [], ["--quick"]),
    ("active_learning", "active_learning.py", [], ["--quick"]),
    ("learning", "learning.py", [], ["--seeds", "2", "--sets", "hymenoptera,digits"]),
    ("quick_model", "quick_model.py", [], ["--quick"]),
    ("training", "training.py", [], ["--quick"]),
    ("invoke", "invoke.py", ["--soak", "60"], []),
    ("video", "video.py", [], ["--seconds", "10", "--repeats", "1", "--memory-seconds", "60"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller, faster runs of every bench")
    parser.add_argument("--only", default="", help="comma-separated bench names")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    OUT.mkdir(exist_ok=True)
    sections = []
    failures = 0
    for name, script, full, quick in BENCHES:
        if only and name not in only:
            continue
        path = HERE / script
        if not path.exists():
            sections.append(f"## {name}\n\n_not available: {script} is missing_\n")
            failures += 1
            continue
        cmd = [sys.executable, str(path), *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        result = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        md = OUT / f"{name}.md"
        body = md.read_text() if md.exists() and md.stat().st_mtime >= time.time() - seconds - 1 else result.stdout
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        if result.returncode != 0:
            failures += 1
            body += f"\n```\n{result.stderr[-3000:]}\n```\n"
        pngs = sorted(p for p in OUT.glob(f"{name}*.png"))
        figures = "".join(f"\n![{p.stem}]({p.name})\n" for p in pngs)
        sections.append(f"## {name} — {status}, {seconds:.0f} s\n\n{body.strip()}\n{figures}")
        print(body, flush=True)
    header = (
        f"# Pictor benchmark report\n\n{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · "
        f"{platform.machine()} · {platform.python_version()} · {'quick' if args.quick else 'full'} run\n\n"
        "Every figure is compared with a baseline measured in the same run on the same machine.\n"
    )
    report = OUT / "REPORT.md"
    report.write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print(f"wrote {report}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
