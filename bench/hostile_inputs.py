"""What each hostile input of issue 11 costs a real ``minitowerd``: status, time, growth
of the API's resident memory while it is handled, and the slowest ``/health`` answer
meanwhile (a thread asks it back to back). The inputs and instruments are the
hostile-input tier's (tests/support/hostile.py), which asserts the bounds; this prints
the figures as a table.

Run: ``uv run python bench/hostile_inputs.py`` from the repository root (``--repeat N``
sends each input N times and reports the worst).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tier's helpers live under tests/

from minitower_shared.migrate import upgrade_to_head  # noqa: E402
from tests.support import hostile  # noqa: E402
from tests.support.processes import start_api  # noqa: E402

BOOTSTRAP_TOKEN = "bench-bootstrap-token-0123456789"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, choices=range(1, 11))
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as folder:
        workdir = Path(folder)
        db_path = workdir / "db" / "minitower.db"
        upgrade_to_head(db_path)
        api = start_api(workdir, db_path, {"MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN})
        try:
            target = hostile.prepare_target(api.url, BOOTSTRAP_TOKEN, workdir / "objects", workdir)
            print(
                f"{'input':32} {'status':>6} {'seconds':>8} {'RSS +MiB':>9} {'/health max ms':>15}"
            )
            for case in hostile.CASES:
                worst: dict[str, float] = {}
                status = None
                for _ in range(args.repeat):
                    status, figures = hostile.measure(target, api.proc.pid, case)
                    for key, value in figures.items():
                        worst[key] = max(worst.get(key, value), value)
                print(
                    f"{case:32} {status if status is not None else '-':>6} "
                    f"{worst['seconds']:8.2f} {worst['rss_growth'] / hostile.MiB:9.1f} "
                    f"{worst['health_slowest'] * 1000:15.0f}"
                )
            print(f"temporary files left in objects/tmp: {len(target.temporary_files())}")
        finally:
            api.stop()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
