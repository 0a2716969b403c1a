"""`make bench`: run every benchmark script in turn; each prints its own figures."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["release.py", "protection.py", "complements.py", "microdata.py", "api.py", "demo.py"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "scripts", nargs="*", metavar="SCRIPT", help=f"only these, of {', '.join(SCRIPTS)}"
    )
    chosen = parser.parse_args().scripts or SCRIPTS
    unknown = sorted(set(chosen) - set(SCRIPTS))
    if unknown:
        parser.error(f"no benchmark {unknown[0]!r}; there are {', '.join(SCRIPTS)}")
    failed = []
    for script in chosen:
        path = HERE / script
        if not path.exists():
            continue
        print(f"\n== {script} ==", flush=True)
        if subprocess.run([sys.executable, str(path)], check=False).returncode:
            failed.append(script)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
