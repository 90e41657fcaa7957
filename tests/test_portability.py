"""A finished project moved elsewhere has nothing to re-run; the package installed from a wheel (not editable, run
outside the checkout) carries its tables and gives the same metadata as the checkout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO, snakemake_bin

# What a checkout holds that the workflow reads (git-tracked), besides the generated sample.
CHECKOUT_PARTS = ("Snakefile", "workflow", "config", "profiles", "envs")
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info")


def _snakemake(project: Path, *args: str, path_first: Path | None = None) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(os.environ, PATH=f"{path_first}{os.pathsep}{path}" if path_first else path)
    result = subprocess.run([snakemake_bin(), *args], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def _checkout_copy(project: Path) -> None:
    for part in CHECKOUT_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, project / part, ignore=IGNORE)
        else:
            project.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / part)


@pytest.mark.slow
def test_a_moved_checkout_has_nothing_to_do(sample_dir, tmp_path):
    project = tmp_path / "first" / "bioscan-rebuild"
    _checkout_copy(project)
    shutil.copytree(sample_dir, project / "resources" / "sample")
    _snakemake(project, "--cores", "2")
    assert (project / "results" / "release" / "MANIFEST.json").is_file()

    moved = tmp_path / "somewhere" / "else" / "bioscan-rebuild"
    shutil.copytree(project, moved, symlinks=True)  # copy2: file times kept, as cp -a or rsync -a do
    shutil.rmtree(project)  # nothing may still point at the first place
    dry_run = _snakemake(moved, "--dry-run", "--cores", "1")
    assert "Nothing to be done" in dry_run.stdout + dry_run.stderr, dry_run.stdout[-3000:]

    # The shipped model decides the default (fusion) backend's boxes: a refitted rule re-runs the photo jobs,
    # by content: the same bytes written again, or a new model card, do not.
    models = moved / "workflow" / "bioscan_rebuild" / "detect" / "models"
    rule = models / "fusion.json"
    rule.write_bytes(rule.read_bytes())
    (models / "MODEL_CARD.md").write_text((models / "MODEL_CARD.md").read_text() + "\nA note.\n")
    dry_run = _snakemake(moved, "--dry-run", "--cores", "1")
    assert "Nothing to be done" in dry_run.stdout + dry_run.stderr, dry_run.stdout[-3000:]
    refitted = json.loads(rule.read_text())
    refitted["rule"]["review_below"] = 0.5
    rule.write_text(json.dumps(refitted))
    plan = _snakemake(moved, "--dry-run", "--cores", "1", "--quiet", "rules")
    # the job stats table: one "rule count" line per planned rule
    jobs = {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", plan.stdout + plan.stderr, re.MULTILINE)}
    assert {"process_photos", "process_images", "release"} <= jobs, plan.stdout[-3000:]
    assert not jobs & {"parse_export", "list_images", "inventory_images", "join_shard"}  # nothing upstream


@pytest.mark.slow
def test_a_delivery_gone_from_the_working_directory_is_missing_whatever_the_checkout_holds(sample_dir, tmp_path):
    """The plan looked a source up in the checkout when the working directory lacked it (meant for the shipped
    tables): with the sample generated in the checkout (`make run`), an export deleted after a run from another
    working directory still counted as there, and the release target planned without its jobs, exit 0."""
    checkout = tmp_path / "checkout"
    _checkout_copy(checkout)
    shutil.copytree(sample_dir, checkout / "resources" / "sample")
    workdir = tmp_path / "work"
    (workdir / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", workdir / "config" / "config.yaml")
    shutil.copytree(sample_dir, workdir / "resources" / "sample")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [snakemake_bin(), "--snakefile", str(checkout / "Snakefile"), "--directory", str(workdir)]
    first = subprocess.run([*cmd, "--cores", "2"], cwd=workdir, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    export = sorted((workdir / "resources" / "sample" / "sample-b").glob("*.tsv"))[0]
    export.unlink()
    for target in ([], ["results/release.json"]):
        done = subprocess.run(
            [*cmd, "--dry-run", "--cores", "1", *target], cwd=workdir, env=env, capture_output=True, text=True
        )
        assert done.returncode != 0, (target, done.stdout[-3000:])
        assert export.relative_to(workdir).as_posix() in done.stdout + done.stderr, done.stderr[-3000:]


def test_an_installed_wheel_runs_metadata_with_the_shipped_tables(realdata, tmp_path):
    """A wheel installed into a new venv (not editable), its console script run outside the checkout.

    The venv borrows the project's dependencies by a path file, so that nothing is downloaded; that path file
    is written after the install, and site-packages' own path files (the editable install) are not read there."""
    export = realdata / "ropensci-bold" / "extracted" / "coelioxys_combined.tsv"
    source = tmp_path / "source"  # build from a copy: setuptools writes build/ into the source tree
    shutil.copytree(REPO / "workflow" / "bioscan_rebuild", source / "workflow" / "bioscan_rebuild", ignore=IGNORE)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--quiet", "--no-deps"]
    built = subprocess.run(pip + ["--no-build-isolation", "--no-index", "-w", str(wheels), str(source)], **CAPTURE)
    assert built.returncode == 0, built.stderr[-3000:]
    shutil.rmtree(source)  # the installed copy must stand alone

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, **CAPTURE)
    wheel = next(wheels.glob("bioscan_rebuild-*.whl"))
    install = subprocess.run([venv / "bin" / "pip", "install", "--quiet", "--no-deps", "--no-index", wheel], **CAPTURE)
    assert install.returncode == 0, install.stderr[-3000:]
    site = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            **CAPTURE,
        ).stdout.strip()
    )
    (site / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}
    where = subprocess.run(
        [venv / "bin" / "python", "-c", WHERE], cwd=tmp_path, env=env, check=True, **CAPTURE
    ).stdout.split()
    assert all(Path(path).is_relative_to(site) and Path(path).exists() for path in where), where

    installed, checkout = tmp_path / "installed", tmp_path / "checkout"
    for outdir, command in ((installed, [venv / "bin" / "bioscan-rebuild"]), (checkout, CHECKOUT_COMMAND)):
        outdir.mkdir()
        run_env = env if outdir == installed else {**env, "PYTHONPATH": str(REPO / "workflow")}
        result = subprocess.run(
            [*command, "metadata", str(export), "-o", str(outdir / "meta.csv")], cwd=outdir, env=run_env, **CAPTURE
        )
        assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(p.name for p in checkout.iterdir())
    assert "meta.csv" in written and "meta.changes.csv" in written
    for name in written:
        assert (installed / name).read_bytes() == (checkout / name).read_bytes(), name


CAPTURE = {"capture_output": True, "text": True}
CHECKOUT_COMMAND = [sys.executable, "-m", "bioscan_rebuild"]
# The package, its shipped tables and the SHACL shapes, as the installed package finds them.
WHERE = """
import bioscan_rebuild
from bioscan_rebuild.export.formats.jsonld import DEFAULT_SHAPES
from bioscan_rebuild.metadata.taxonomy.tables import shipped_table
print(bioscan_rebuild.__file__, shipped_table("taxonomy_fixes.tsv"), shipped_table("corrections.tsv"), DEFAULT_SHAPES)
"""


def test_the_plan_names_the_revision_and_untracked_code_makes_it_modified(sample_dir, tmp_path):
    """The graph's git revision read `git status --untracked-files=no`: a new module the stage imports (an untracked
    file under workflow/) changed what ran and the revision still claimed a clean commit."""
    project = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
    if not (project / "Snakefile").is_file():
        pytest.fail("the clone holds no Snakefile")
    shutil.copytree(sample_dir, project / "resources" / "sample")
    # the last commit of the code (a commit of the docs alone names no other code)
    code = ["rev-list", "-1", "HEAD", "--", "workflow", "Snakefile"]
    head = subprocess.run(["git", "-C", str(project), *code], capture_output=True, text=True).stdout
    plan = project / "results" / "provenance" / "plan.json"
    _snakemake(project, "--cores", "1", str(plan.relative_to(project)))
    assert json.loads(plan.read_text())["git_revision"] == head.strip()
    (project / "workflow" / "bioscan_rebuild" / "stats" / "extra.py").write_text("X = 1\n")
    plan.unlink()
    _snakemake(project, "--cores", "1", str(plan.relative_to(project)))
    assert json.loads(plan.read_text())["git_revision"] == f"{head.strip()}-modified"
    # a commit that changes no job (the docs) re-runs nothing: the revision was a parameter, and every commit re-ran
    # the graph, the release and the audit
    (project / "workflow" / "bioscan_rebuild" / "stats" / "extra.py").unlink()
    _snakemake(project, "--cores", "1", str(plan.relative_to(project)))
    (project / "README.md").write_text((project / "README.md").read_text() + "\nA line.\n")
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-qam", "docs"], check=True)
    planned = _snakemake(project, "-n", str(plan.relative_to(project)))
    assert "Nothing to be done" in planned.stdout + planned.stderr, planned.stdout[-2000:]
    # a commit of the code is named: the plan is made again (it kept the revision of the run before)
    module = project / "workflow" / "bioscan_rebuild" / "stats" / "extra.py"
    module.write_text("X = 2\n")
    subprocess.run([*git, "add", str(module)], check=True)
    subprocess.run([*git, "commit", "-qm", "code"], check=True)
    _snakemake(project, "--cores", "1", str(plan.relative_to(project)))
    new_head = subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert json.loads(plan.read_text())["git_revision"] == new_head.stdout.strip()


def test_a_revision_that_cannot_be_known_is_named_by_none_and_said(sample_dir, tmp_path):
    """A shallow clone (CI's usual checkout) named its first commit, whatever the last commit of the code was: the
    same code gave another release than a full clone's. A checkout git would not read (another owner's) dropped the
    revision without a word (reviewer determ), and a copy of the code inside a repository that does not track it
    named '' (reviewer diffl)."""
    project = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{REPO}", str(project)], check=True)
    shutil.copytree(sample_dir, project / "resources" / "sample")
    plan = project / "results" / "provenance" / "plan.json"
    done = _snakemake(project, "--cores", "1", str(plan.relative_to(project)))
    assert json.loads(plan.read_text())["git_revision"] is None
    assert "the release names no git revision of the code: a shallow clone" in done.stderr
    # a copy of the code inside a repository that does not track it: it named '' or '-modified' (reviewer diffl)
    outer = tmp_path / "outer"
    inner = outer / "sub" / "project"
    shutil.copytree(project, inner, ignore=shutil.ignore_patterns(".git", "results", ".snakemake"))
    git = ["git", "-C", str(outer), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    (outer / ".gitignore").write_text("sub/\n")
    subprocess.run([*git, "add", ".gitignore"], check=True)
    subprocess.run([*git, "commit", "-qm", "outer"], check=True)
    inner_plan = inner / "results" / "provenance" / "plan.json"
    done = _snakemake(inner, "--cores", "1", str(inner_plan.relative_to(inner)))
    assert json.loads(inner_plan.read_text())["git_revision"] is None
    assert "not tracked by the git repository it lies in" in done.stderr
    # git refusing the checkout (dubious ownership), as a stand-in git that fails as it does
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text(
        "#!/bin/sh\necho \"fatal: detected dubious ownership in repository at '$PWD'\" >&2\nexit 128\n"
    )
    (fake / "git").chmod(0o755)
    plan.unlink()
    done = _snakemake(project, "--cores", "1", str(plan.relative_to(project)), path_first=fake)
    assert json.loads(plan.read_text())["git_revision"] is None
    assert "no git revision of the code: git cannot read this checkout (fatal: detected dubious ownership" in (
        done.stderr
    )
