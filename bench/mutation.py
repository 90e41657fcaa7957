"""Mutation testing of the pure core modules with mutmut: the score per module, and the surviving mutants.

    python bench/mutation.py                      # every module, table + survivors, exit 1 below --min-score
    python bench/mutation.py --modules geometry   # one module
    python bench/mutation.py --show-survivors     # also print each survivor's diff (mutmut show)

mutmut only mutates packages under ``.``, ``src/`` or ``source/``, while ours lives in ``workflow/``. So the run
happens in a staging folder (``build/mutation`` unless --workdir) where ``src/bioscan_rebuild`` links to the package
and ``tests``, ``shared`` and the files the tests read link to the repository's. mutmut copies them into its
``mutants/`` folder, records which test reaches which function, and runs only those tests per mutant, each in a
process forked from one that has already imported everything.

A mutant that no test can kill because the change is equivalent (same behaviour) carries a
``# pragma: no mutate - <why>`` comment on its line: the reason lives beside the code it excuses.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "bioscan_rebuild"

# module -> (files under workflow/bioscan_rebuild, test files that exercise them in-process)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "geometry": (["images/geometry.py", "core/boxes.py"], ["test_geometry.py"]),
    "barcodes": (["metadata/barcodes.py"], ["test_barcodes.py", "test_taxonomy.py"]),
    "bin_taxonomy": (
        ["core/bins.py", "core/names.py", "metadata/bins.py", "metadata/taxonomy/names.py"],
        ["test_taxonomy.py", "test_barcodes.py"],
    ),
    "bold": (
        ["ingest/bold.py"],
        ["test_bold.py", "test_ingest.py", "test_bad_input.py", "test_barcodes.py", "test_taxonomy.py"],
    ),
    "splits": (["splits/protocol.py"], ["test_splits.py"]),
    "store": (["core/store.py"], ["test_images_inventory.py", "test_images.py", "test_bad_input.py"]),
    "layout": (["export/layout.py"], ["test_export.py"]),
}
# Files the selected tests read from the repository root (mutmut runs them from inside mutants/).
ALSO_COPY = ["Snakefile", "config", "workflow", "resources", "profiles", "bench", "README.md", "Makefile"]
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def stage(workdir: Path, modules: list[str]) -> None:
    """The staging folder mutmut runs in: links to the package, tests and data, and its own pyproject.toml."""
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "src").mkdir(parents=True)
    (workdir / "src" / PACKAGE).symlink_to(REPO / "workflow" / PACKAGE)
    (workdir / "tests").symlink_to(REPO / "tests")
    shared = REPO.parent / "shared"
    if shared.exists():
        (workdir / "shared").symlink_to(shared.resolve())
    copied = []
    for name in ALSO_COPY:
        (workdir / name).symlink_to(REPO / name)
        copied.append(name)
    files = sorted({f"src/{PACKAGE}/{path}" for name in modules for path in MODULES[name][0]})
    tests = sorted({f"tests/{test}" for name in modules for test in MODULES[name][1]})
    pytest_options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    addopts = pytest_options.get("addopts", "") + " -m 'not slow'"
    config = [
        "[tool.pytest.ini_options]",
        f"addopts = {json.dumps(addopts)}",
        f"markers = {json.dumps(pytest_options.get('markers', []))}",
        "",
        "[tool.mutmut]",
        f'source_paths = ["src/{PACKAGE}"]',
        f"only_mutate = {json.dumps(files)}",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        f"also_copy = {json.dumps(copied)}",
        # the default (15 x the test's own time + 1 s) is tight on a shared 2-core machine
        "timeout_multiplier = 30.0",
        "timeout_constant = 10.0",
        "",
    ]
    (workdir / "pyproject.toml").write_text("\n".join(config))


def mutmut(workdir: Path, *args: str, log=None) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", CI=os.environ.get("CI", ""))
    if log is None:
        return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    return subprocess.run(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def results(workdir: Path) -> dict[str, str]:
    """mutant name -> status, for every mutant (mutmut results --all true)."""
    listed = mutmut(workdir, "results", "--all", "true")
    if listed.returncode != 0:
        raise SystemExit(f"mutmut results failed:\n{listed.stdout}\n{listed.stderr}")
    found = re.findall(r"^\s*(\S+__mutmut_\d+): (.+?)\s*$", listed.stdout, flags=re.MULTILINE)
    return dict(found)


def module_of(mutant: str, modules: list[str]) -> str:
    dotted = mutant.split(".x_")[0].split(".xǁ")[0]
    for name in modules:
        for path in MODULES[name][0]:
            if dotted == f"{PACKAGE}." + path.removesuffix(".py").replace("/", "."):
                return name
    raise KeyError(mutant)


def score_table(statuses: dict[str, str], modules: list[str]) -> list[dict]:
    rows = []
    for name in modules:
        mine = {m: s for m, s in statuses.items() if module_of(m, modules) == name}
        killed = sum(status in KILLED for status in mine.values())
        rows.append(
            {
                "module": name,
                "files": MODULES[name][0],
                "mutants": len(mine),
                "killed": killed,
                "survived": sorted(m for m, s in mine.items() if s not in KILLED),
                "score": round(100 * killed / len(mine), 1) if mine else 100.0,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=list(MODULES))
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "mutation")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--min-score", type=float, default=90.0, help="exit 1 when a module scores below this")
    parser.add_argument("--json", type=Path, help="also write the table here")
    parser.add_argument("--show-survivors", action="store_true", help="print each surviving mutant's diff")
    args = parser.parse_args(argv)

    workdir = args.workdir.resolve()
    stage(workdir, args.modules)
    log_path = workdir / "mutmut.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        run = mutmut(workdir, "run", "--max-children", str(args.max_children), log=log)
    seconds = time.perf_counter() - start
    statuses = results(workdir)
    if run.returncode != 0 or not statuses:
        print(log_path.read_text()[-4000:])
        raise SystemExit(f"mutmut run failed (exit {run.returncode}); its log: {log_path}")

    rows = score_table(statuses, args.modules)
    print(f"mutmut {len(statuses)} mutants in {seconds:.0f} s ({args.max_children} processes)\n")
    print(f"| {'module':<13} | {'files':<45} | mutants | killed | survived | score |")
    print(f"|{'-' * 15}|{'-' * 47}|---------|--------|----------|-------|")
    for row in rows:
        files = ", ".join(row["files"])
        print(
            f"| {row['module']:<13} | {files:<45} | {row['mutants']:>7} | {row['killed']:>6} | "
            f"{len(row['survived']):>8} | {row['score']:>4.1f}% |"
        )
    for row in rows:
        for mutant in row["survived"]:
            print(f"survived ({row['module']}): {mutant} [{statuses[mutant]}]")
            if args.show_survivors:
                print(mutmut(workdir, "show", mutant).stdout)
    if args.json:
        args.json.write_text(json.dumps({"seconds": round(seconds, 1), "modules": rows}, indent=2) + "\n")
    below = [row["module"] for row in rows if row["score"] < args.min_score]
    if below:
        print(f"\nbelow {args.min_score:.0f} %: {', '.join(below)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
