#!/usr/bin/env python3
"""Runs sigil's benchmark scenarios side by side with the tools users would pick, prints a table and
writes BENCHMARKS.md. Called by scripts/bench.sh, which installs the tools and builds sigil.
Stdlib only."""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report  # noqa: E402
import scenarios  # noqa: E402
from support import stop_all  # noqa: E402

FULL = {"sealed": 10_000, "memory_external": 10_000, "memory_unrelated": 10_000, "external": 1_000,
        "distinct": 100, "interval": 10, "sync": 1_000, "render": 1_000, "seal_keys": 100, "sops_keys": 100}
SMOKE = {"sealed": 40, "memory_external": 20, "memory_unrelated": 20, "external": 20, "distinct": 5,
         "interval": 2, "sync": 30, "render": 30, "seal_keys": 5, "sops_keys": 5}
SCENARIOS = ["cold", "external", "sync", "render", "cli", "sops"]


class Tools:
    def __init__(self, sigil, bin_dir):
        def find(name):
            for directory in [bin_dir, *os.environ.get("PATH", "").split(os.pathsep)]:
                if directory and os.access(os.path.join(directory, name), os.X_OK):
                    return os.path.join(directory, name)
            return None
        self.sigil = sigil
        self.kubectl, self.helm, self.git = find("kubectl"), find("helm"), find("git")
        self.age, self.age_keygen = find("age"), find("age-keygen")
        self.sops, self.moto_server = find("sops"), find("moto_server")

    def version(self, name, *args):
        path = getattr(self, name.replace("-", "_"))
        if not path:
            return "not installed"
        try:
            out = subprocess.run([path, *args], capture_output=True, text=True, timeout=30)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "unknown"


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpu:
            for line in cpu:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as mem:
            total = int(mem.readline().split()[1]) / 1024 / 1024
    except OSError:
        total = 0
    return {"cpu": model, "cores": os.cpu_count(), "memory": f"{total:.0f} GiB",
            "kernel": platform.release(), "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sigil", required=True, help="the sigil binary to measure")
    parser.add_argument("--bin", default="", help="where the tools are (scripts/install-tools.sh's bin)")
    parser.add_argument("--kubeconfig", help="measure against this cluster instead of a fresh `sigil dev`")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run; no goal asserted")
    parser.add_argument("--runs", type=int, help="repetitions of each scenario (default 3; 1 with --smoke)")
    parser.add_argument("--memory-runs", type=int, help="runs of the cold start that go on to memory at scale "
                        "(default: every run)")
    parser.add_argument("--only", help=f"comma-separated scenarios ({','.join(SCENARIOS)})")
    parser.add_argument("--out", help="write the report here (default: BENCHMARKS.md; nothing with --smoke)")
    parser.add_argument("--build", default="", help="how the binary was built (for the report)")
    parser.add_argument("--command", default="", help="the command line (for the report)")
    args = parser.parse_args()

    sizes = SMOKE if args.smoke else FULL
    runs = args.runs or (1 if args.smoke else 3)
    only = args.only.split(",") if args.only else SCENARIOS
    tools = Tools(os.path.abspath(args.sigil), args.bin)
    workdir = tempfile.mkdtemp(prefix="sigil-bench.")
    started = time.monotonic()
    began = datetime.datetime.now(datetime.timezone.utc)
    info = machine()

    def log(message):
        print(f"bench [{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    bench = scenarios.Bench(tools, sizes, workdir, runs, args.kubeconfig, log)
    if args.memory_runs:
        bench.memory_runs = args.memory_runs
    rows, failed = [], []
    try:
        for name in only:
            log(f"scenario {name}")
            try:
                rows += getattr(scenarios, f"scenario_{name}")(bench)
            except Exception as error:  # a broken scenario is reported, the others still run
                failed.append(name)
                traceback.print_exc()
                rows += scenarios.failed_rows(name, f"{type(error).__name__}: {error}")
    finally:
        bench.stop()
        stop_all()
    info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = {
        "sigil": tools.version("sigil", "--version"),
        "kubectl": tools.version("kubectl", "version", "--client"),
        "helm": tools.version("helm", "version", "--short"),
        "age": tools.version("age", "--version"),
        "sops": tools.version("sops", "--version", "--disable-version-check"),
        "moto": tools.version("moto_server", "--version"),
    }
    table = report.table(rows, asserted=not args.smoke)
    print(table)
    out = args.out or (None if args.smoke else "BENCHMARKS.md")
    if out:
        with open(out, "w") as f:
            f.write(report.document(rows, info, versions, args, runs, began, time.monotonic() - started, sizes))
        log(f"wrote {out}")
    log(f"done in {time.monotonic() - started:.0f}s; logs in {workdir}")
    if failed:
        log(f"scenarios that failed to run: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
