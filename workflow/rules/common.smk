# Small helpers shared by all stages (batch and shard lists, input functions).
# Nothing here reads record tables: the DAG comes from the config alone, so parsing
# the Snakefile stays cheap on every cluster job.
import ast
import codecs
import functools
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path


def _check_batches(batches):
    """Batches by name, in delivery order: by `delivered` date where batches have one (all must), else as listed."""
    names = [batch["name"] for batch in batches]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(
            f"config: batches: names must be unique, repeated: {duplicated}"
        )
    dated = [batch for batch in batches if "delivered" in batch]
    if dated and len(dated) != len(batches):
        undated = [batch["name"] for batch in batches if "delivered" not in batch]
        raise ValueError(
            f"config: batches: {undated} have no `delivered` date but others do: give every batch one, or none"
        )
    if dated:
        batches = sorted(
            batches, key=lambda batch: batch["delivered"]
        )  # stable: ties keep config order
    return {batch["name"]: batch for batch in batches}


def _version_problem(previous, version):
    """export.version must be newer than the previous release's (its resolved config says which), before the
    first job rather than at the release step (export.release.check_newer_version checks it there too)."""
    from packaging.version import InvalidVersion, Version

    path = os.path.join(previous, "bioscan5m", "metadata", "config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        before = (json.load(handle).get("export") or {}).get("version")
    if before is None:
        return None
    try:
        newer = Version(str(version)) > Version(str(before))
    except InvalidVersion:
        newer = str(version) != str(before)
    return (
        None
        if newer
        else f"export.version {version} is not newer than {before}, the version of release.previous: raise it"
    )


def _regex_problem(where, pattern):
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        return f"{where}: not a regular expression ({error}): {pattern!r}"
    if "processid" not in compiled.groupindex:  # the text "(?P<processid>" inside a character class is none
        return f"{where}: {pattern!r} has no (?P<processid>...) group"
    return None


def _date_problem(batch):
    """A `delivered` date that is no day of the calendar (2024-28-02, month and day swapped) ordered the
    deliveries by its text."""
    import datetime

    try:
        datetime.date.fromisoformat(batch["delivered"])
    except ValueError:
        return f"batches: {batch['name']}: delivered {batch['delivered']!r} is no date (YYYY-MM-DD)"
    return None


# Constants of the package, read from its sources, not imported: parsing the Snakefile must stay cheap and need
# no OpenCV.
def _source_constant(module, name):
    path = os.path.join(workflow.basedir, "workflow", "bioscan_rebuild", module)
    text = open(path).read()
    value = re.search(rf"^{name} = (.+)$", text, re.MULTILINE).group(1)
    return value.split("#")[0].strip().strip("\"'")  # a comment after the value is not the value


@functools.cache
def _backend_parameters(backend):
    """{parameter: default} a detector backend takes (None: no literal default), read from the package's sources
    like _source_constant: the registry's class, its __init__ keywords, and the classical DEFAULTS where it passes
    keywords on to the classical detector (classical itself, fusion)."""
    import ast

    def tree(dotted):
        path = os.path.join(workflow.basedir, "workflow", *dotted.split("."))
        return ast.parse(open(f"{path}.py").read())

    def literal(dotted, name):
        for node in tree(dotted).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if any(getattr(t, "id", None) == name for t in targets):  # NAME = ... or NAME: type = ...
                return ast.literal_eval(node.value)
        raise KeyError(f"{dotted}.{name}")

    source, name = literal("bioscan_rebuild.detect.registry", "BACKENDS")[backend]
    classes = {n.name: n for n in tree(source).body if isinstance(n, ast.ClassDef)}

    def constructor(node):
        """The __init__ Python calls: the class's own, else that of its first base (in order) that has one."""
        own = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
        if own:
            return own[0]
        for base in node.bases:
            if not (isinstance(base, ast.Name) and base.id in classes):
                raise KeyError(f"{source}.{name}: its base {ast.unparse(base)} is not defined beside it")
            found = constructor(classes[base.id])
            if found is not None:
                return found
        return None

    init = constructor(classes[name])
    if init is None:
        raise KeyError(f"{source}.{name}: no __init__ in the class or in its bases")
    args = init.args.args[1:] + init.args.kwonlyargs
    defaults = [None] * (len(init.args.args[1:]) - len(init.args.defaults)) + list(init.args.defaults)
    defaults += list(init.args.kw_defaults)
    taken = {}
    samples = {"bool": False, "int": 0, "float": 0.0}  # a value of the type, for the check (text: any value)
    for arg, default in zip(args, defaults):
        try:
            taken[arg.arg] = None if default is None else ast.literal_eval(default)
        except ValueError:
            taken[arg.arg] = None
        if taken[arg.arg] is None and arg.annotation is not None:  # e.g. half: bool | None = None
            kinds = [k.strip() for k in ast.unparse(arg.annotation).split("|") if k.strip() != "None"]
            if len(kinds) == 1 and kinds[0] in samples:
                taken[arg.arg] = samples[kinds[0]]
    if init.args.kwarg is not None:
        taken.update(literal("bioscan_rebuild.detect.classical", "DEFAULTS"))
    return taken


def _detector_problems(backend, params, where):
    """Unknown parameters, values of another type than the default's (a string "false" is true to Python), and
    numbers out of their parameter's range (``PARAMETER_RANGES``)."""
    known = _backend_parameters(backend)
    problems = []
    unknown = sorted(set(params) - set(known))
    if unknown:
        problems.append(f"{where}: backend {backend} has no parameters {unknown}")
    kinds = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    for key, value in params.items():
        default = known.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key in PARAMETER_RANGES:
            low, high = PARAMETER_RANGES[key]
            if value < low or (high is not None and value > high):
                bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
                problems.append(f"{where}: {key}: {value!r} is not {bounds}")
        if default is None or value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (isinstance(default, float) or float(value).is_integer())
        else:
            ok = isinstance(value, type(default))
        if not ok:
            problems.append(f"{where}: {key}: {value!r} is not {kinds.get(type(default), type(default).__name__)}")
    return problems


# each detector parameter's range, as detect/base.py states it (a literal: read without importing the package)
def _source_literal(module, name):
    """A literal constant (a dict, a tuple) of the package's source, however it is laid out; read without importing
    the package, like _source_constant."""
    path = os.path.join(workflow.basedir, "workflow", "bioscan_rebuild", module)
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(f"{module} has no constant {name}")


PARAMETER_RANGES = _source_literal("detect/base.py", "PARAMETER_RANGES")


def _is_shipped_model(path):
    """The file at ``path`` is the package's own model (by content; a missing file is not)."""
    model = _source_constant("detect/shipped.py", "MODEL")
    shipped = os.path.join(workflow.basedir, "workflow", "bioscan_rebuild", "detect", "models", model)
    if not (os.path.isfile(path) and os.path.isfile(shipped)):
        return False
    if os.path.getsize(path) != os.path.getsize(shipped):
        return False
    with open(path, "rb") as given, open(shipped, "rb") as ours:
        return hashlib.sha256(given.read()).digest() == hashlib.sha256(ours.read()).digest()


def _whole_numbers(value, schema):
    """``value`` with every whole-number float the schema wants as an integer made an int: JSON Schema counts 4.0
    as an integer, and Snakemake's --config reads 4.0 or 1e2 as floats, which range() and OpenCV refuse."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "integer" in kinds and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                value[key] = _whole_numbers(value[key], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value[:] = [_whole_numbers(item, schema["items"]) for item in value]
    return value


def _config_schema():
    import yaml

    with open(os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")) as handle:
        return yaml.safe_load(handle)


def _check_config(config):
    """Problems the schema cannot see, found at start-up rather than in the job that would meet them."""
    _whole_numbers(config, _config_schema())
    problems = [
        _regex_problem(
            "ingest.image_name_pattern", config["ingest"]["image_name_pattern"]
        )
    ]
    for batch in config["batches"]:
        name = batch["name"]
        if "delivered" in batch:
            problems.append(_date_problem(batch))
        if "image_name_pattern" in batch:
            where = f"batches: {name}: image_name_pattern"
            problems.append(_regex_problem(where, batch["image_name_pattern"]))
        images, export = batch.get("images"), batch.get("export")
        if images and os.path.exists(images) and not os.path.isdir(images):
            problems.append(
                f"batches: {name}: images: {images} is a file, not a folder of photos"
            )
        if export and os.path.isdir(export):
            problems.append(
                f"batches: {name}: export: {export} is a folder, not a BOLD export file"
            )
    tables = {
        "images.box_corrections": config["images"]["box_corrections"],
        "taxonomy.fixes": config["taxonomy"]["fixes"],
        "taxonomy.corrections": config["taxonomy"]["corrections"],
        "splits.freeze": config["splits"]["freeze"],
    }
    for key, path in tables.items():
        if path and path != "shipped" and os.path.isdir(path):
            problems.append(f"{key}: {path} is a folder, not a table file")
    # The image folders hold original_full, which for most photos is the stored original itself.
    options = config["export"]
    needing = [
        f
        for f in options["formats"]
        if f == "images"
        or (f == "hdf5" and options["image_package"] == "original_full")
    ]
    if options["zip_packages"] and "images" not in options["formats"]:
        problems.append(
            "export.zip_packages zips the image folders, which only the 'images' format writes: add it to "
            "export.formats, or set zip_packages false"
        )
    if config["image_store"]["mode"] == "none" and needing:
        problems.append(
            f"image_store.mode: none keeps no original photos, but export.formats {needing} copy them "
            "from the store: use link or copy, or leave those formats out"
        )
    # limits that together refuse every record: the run went through ingest, images and curation first
    barcodes, images = config["barcodes"], config["images"]
    if barcodes["min_length"] > barcodes["max_length"]:
        problems.append(
            f"barcodes.min_length {barcodes['min_length']} is above barcodes.max_length "
            f"{barcodes['max_length']}: every barcode would be rejected"
        )
    if images["min_side"] > min(images["original_full_size"]):
        problems.append(
            f"images.min_side {images['min_side']} is above the short side of images.original_full_size "
            f"{images['original_full_size']}: every photo would be too_small"
        )
    detector = config["images"]["detector"]
    weights = {"weights": detector["weights"]} if detector["weights"] else {}
    problems += _detector_problems(detector["backend"], {**detector["params"], **weights}, "images.detector")
    for batch in config["batches"]:
        if batch.get("images") and batch.get("detector_params"):
            where = f"batches: {batch['name']}: detector_params"
            problems += _detector_problems(detector["backend"], batch["detector_params"], where)
    if detector["backend"] == "yolo" and not (
        detector["weights"] or detector["params"].get("weights")
    ):
        unweighted = [
            batch["name"]
            for batch in config["batches"]
            if batch.get("images")
            and not (batch.get("detector_params") or {}).get("weights")
        ]
        if unweighted:
            problems.append(
                f"images.detector: backend yolo needs weights (a .pt file), none given for batches {unweighted}: "
                "set images.detector.weights, or use backend onnx or fusion for the shipped model"
            )
    if detector["backend"] == "fusion":
        # other weights under the shipped rule would run with thresholds fitted on another model's boxes
        ruleless = []
        for batch in config["batches"]:
            params = {**detector["params"], **(batch.get("detector_params") or {})}
            weights = detector["weights"] or params.get("weights")
            if batch.get("images") and weights and not params.get("rule") and not _is_shipped_model(weights):
                ruleless.append(batch["name"])
        if ruleless:
            problems.append(
                f"images.detector: backend fusion with weights of your own needs their rule, none given for batches "
                f"{ruleless}: set images.detector.params.rule to the fusion.json train-detector wrote beside them"
            )
    previous = config["release"]["previous"]
    if previous:
        if config["splits"]["freeze"]:
            problems.append(
                "release.previous freezes the splits from that release: leave splits.freeze null"
            )
        if os.path.abspath(previous) == os.path.abspath("results/release"):
            problems.append(
                "release.previous: results/release is this run's output: copy the published release elsewhere"
            )
        elif not os.path.isfile(os.path.join(previous, "MANIFEST.json")):
            problems.append(
                f"release.previous: {previous} holds no MANIFEST.json: name the folder of a published release"
            )
        else:
            problems.append(_version_problem(previous, config["export"]["version"]))
    problems = [problem for problem in problems if problem]
    if problems:
        raise ValueError("config: " + "; ".join(problems))


_check_config(config)
BATCHES = _check_batches(config["batches"])
EXPORT_BATCHES = [name for name, batch in BATCHES.items() if batch.get("export")]
IMAGE_BATCHES = [name for name, batch in BATCHES.items() if batch.get("images")]
SHARDS = [f"shard-{i:03d}" for i in range(config["shards"])]


def _photo_groups(n_shards, size):
    """Photo jobs' groups of consecutive shards, named as bioscan_rebuild.core.schemas.shard_groups names them."""
    groups = {}
    for first in range(0, n_shards, size):
        last = min(first + size, n_shards) - 1
        name = SHARDS[first] if first == last else f"shards-{first:03d}-{last:03d}"
        groups[name] = SHARDS[first : last + 1]
    return groups


PHOTO_GROUPS = _photo_groups(config["shards"], config["photo_job_shards"])
GROUP_OF_SHARD = {
    shard: group for group, members in PHOTO_GROUPS.items() for shard in members
}

# The stage code is the package under workflow/; put it on the path so the same command
# works in the project's venv and in the per-rule conda environments. Through the shell prefix
# (cluster jobs parse this file again), not the rules' commands or params: those must not name
# the checkout's location, or a moved checkout would re-run every job.
PACKAGE_DIR = os.path.join(workflow.basedir, "workflow")
# BIOSCAN_REBUILD_BASEDIR: where the provenance step finds the workflow's own files (shipped tables) that the
# plan names relative to the checkout.
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={shlex.quote(PACKAGE_DIR)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    f"export BIOSCAN_REBUILD_BASEDIR={shlex.quote(workflow.basedir)}; "
)
CLI = "python -m bioscan_rebuild"


# Versions of the image-stage code, passed as a parameter, so that a new detector version re-runs
# the image jobs (Snakemake's params trigger) instead of leaving stale outputs in place.
CLASSICAL_VERSION = _source_constant("detect/classical.py", "VERSION")
IMAGE_STAGE_VERSION = _source_constant("images/process.py", "STAGE_VERSION")
PHOTO_TABLE_VERSION = _source_constant("images/shard.py", "PHOTO_TABLE_VERSION")
IMAGE_CODE_VERSION = f"image-stage-{IMAGE_STAGE_VERSION}/{CLASSICAL_VERSION}/photo-table-{PHOTO_TABLE_VERSION}"

# The content-addressed image store, written by inventory_images and process_photos as a side
# effect (many jobs share it, so it cannot be one rule's output). Release reads it through the
# image tables, whose sha256 columns name every file it takes, so it is a parameter, not an input.
STORE = "results/store"

BATCH_PATTERN = "|".join(map(re.escape, BATCHES))

# The release folder, and the release job's output beside it: a receipt (export.release.write_receipt), since
# Snakemake deletes a job's outputs before it runs and after it fails, and the release's own files as outputs
# left the previous release without its manifest, CSV and accounting when a rerun failed.
RELEASE = "results/release"
RELEASE_RECEIPT = "results/release.json"
RELEASE_AUDIT = "results/audit/audit.json"
RELEASE_RECEIPT_STALE = "results/.release.json.stale"  # a receipt set aside, until its release is back or rebuilt
# what the receipt stands for: the files whose loss re-runs the release job (the receipt names the manifest's size,
# checked at every start: its sha256 would mean reading a manifest of GBs at 5M photos)
RELEASE_KEPT = (
    "MANIFEST.json",
    "accounting.json",
    "bioscan5m/metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv",
)


def release_size_mb(wildcards, input):
    """The audit reads the release (its manifest and CSV: 4 GB at 5.15M records) and the previous one: the
    memory it asks for follows them (its own input is the receipt, of a few hundred bytes)."""
    paths = [os.path.join(RELEASE, name) for name in RELEASE_KEPT if name != "accounting.json"]
    return input.size_mb + sum(os.path.getsize(path) for path in paths if os.path.isfile(path)) / 1e6


def audit_mem_mb(wildcards, input, attempt):
    """1.5 GB (the audit's own tables and code: 2.12 GB at 500k records, a 420 MB CSV) and 4 x the release's size,
    within 2-16 GB (15.3 GB at 5.15M records), grown with each attempt as ``more_each_attempt``'s."""
    return attempt * min(16000, max(2000, 1500 + 4 * round(release_size_mb(wildcards, input))))


def _release_matches(receipt, release=RELEASE):
    """Whether the release folder is the one the receipt records: every file of RELEASE_KEPT there, the manifest of
    the size the receipt names and not newer than it (the release job writes the receipt after the manifest)."""
    try:
        stated = json.loads(Path(receipt).read_text())["manifest_bytes"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    manifest = os.path.join(release, "MANIFEST.json")
    whole = all(os.path.isfile(os.path.join(release, name)) for name in RELEASE_KEPT)
    return (
        whole
        and stated == os.path.getsize(manifest)
        and os.path.getmtime(manifest) <= os.path.getmtime(receipt)
    )


def check_release_receipt(
    receipt=RELEASE_RECEIPT, stale=RELEASE_RECEIPT_STALE, release=RELEASE, audit=RELEASE_AUDIT
):
    """Set the receipt aside (as ``stale``) when the release it records was removed or replaced since, so the
    release job runs again, as it did when the release's files were its outputs; put it back when that release is
    back as it was (moved aside during a dry run, which must list the job and must not lose the receipt). And remove
    the audit's record when a file of RELEASE_KEPT is newer than it (edited by hand), so the audit runs again."""
    if not workflow.is_main_process:  # a job's own Snakemake (on a cluster node) leaves the run's state alone
        return
    if os.path.isfile(audit) and any(
        os.path.isfile(path) and os.path.getmtime(path) > os.path.getmtime(audit)
        for path in (os.path.join(release, name) for name in RELEASE_KEPT)
    ):
        print(f"{release}: changed since its audit: it is audited again", file=sys.stderr)
        os.remove(audit)
    if os.path.isfile(receipt):
        if os.path.isfile(stale):  # a release job wrote the receipt since
            os.remove(stale)
        if not _release_matches(receipt, release):
            print(
                f"{release}: not the release {receipt} records (removed or changed since): it is made again",
                file=sys.stderr,
            )
            os.replace(receipt, stale)
    elif os.path.isfile(stale) and _release_matches(stale, release):
        os.replace(stale, receipt)  # the recorded release is back: nothing to make


check_release_receipt()


def print_run_warnings(path="results/ingest/accounting.json"):
    """After a successful run: the ingest accounting's warnings (an export that may have been cut short), which
    the jobs write only to their logs."""
    if Path(path).exists():
        for warning in json.loads(Path(path).read_text()).get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)


def export_of(wildcards):
    return BATCHES[wildcards.batch]["export"]


def images_of(wildcards):
    return BATCHES[wildcards.batch]["images"]


def name_pattern_of(wildcards):
    return BATCHES[wildcards.batch].get(
        "image_name_pattern", config["ingest"]["image_name_pattern"]
    )


# sha256 of input files by their size, mtime, inode and ctime (``file_fingerprint``): in the working folder, so that
# every DAG build (each cluster job's too) finds it; deleting it costs one hashing of the files again
DIGEST_CACHE = os.path.join(".snakemake", "bioscan-rebuild", "file-digests.json")
_DIGESTS = {}


def _read_digests():
    try:
        cached = json.loads(Path(DIGEST_CACHE).read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def content_digest(path):
    """sha256 of the file's bytes, hashed again only when its size, mtime, inode or ctime changed (ctime: any write
    or ``utime`` sets it, and no user can set it back), else read from ``DIGEST_CACHE``. None where it cannot be
    read (the job then says why)."""
    try:
        before = os.stat(path)
    except OSError:
        return None
    facts = [before.st_size, before.st_mtime_ns, before.st_ino, before.st_ctime_ns]
    key = os.path.abspath(path)
    if not _DIGESTS:
        _DIGESTS.update(_read_digests())
    cached = _DIGESTS.get(key)
    if isinstance(cached, list) and len(cached) == 5 and cached[:4] == facts:
        return cached[4]
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        after = os.stat(path)
    except OSError:
        return None
    if [after.st_size, after.st_mtime_ns, after.st_ino, after.st_ctime_ns] == facts:  # not written while read
        _DIGESTS[key] = [*facts, digest.hexdigest()]
        _write_digests()
    return digest.hexdigest()


def _write_digests():
    """Beside what another process (a cluster job's DAG build) wrote meanwhile; replaced whole (``os.replace``)."""
    try:
        os.makedirs(os.path.dirname(DIGEST_CACHE), exist_ok=True)
        merged = {**_read_digests(), **_DIGESTS}
        temporary = f"{DIGEST_CACHE}.{os.getpid()}.tmp"
        Path(temporary).write_text(json.dumps(merged, sort_keys=True))
        os.replace(temporary, DIGEST_CACHE)
    except OSError:
        pass  # a read-only working folder: the files are hashed again next time


def file_fingerprint(paths):
    """The sha256 of each file's bytes, a params value: a file replaced by one with an older time (``cp -p``,
    ``rsync -a`` and ``unzip`` keep the sender's) re-runs its job, where Snakemake's own trigger sees only a newer
    one, and so does one edited in place with its size and mtime put back (``exiftool -P``, a script's
    ``os.utime``); the same bytes copied with their times (``cp -a`` of the project) re-run nothing. Hashed
    only when a file's size, mtime, inode or ctime changed (``content_digest``). Left out of the provenance plan
    (``_plan``), which hashes the files itself."""
    facts = []
    for path in paths:
        digest = content_digest(path)
        facts.append(f"{path}:{digest}" if digest else f"{path}:absent")
    return ";".join(facts)


def fingerprint_of(*inputs):
    """A params function: ``file_fingerprint`` of what the input functions ``inputs`` name for a job."""

    def fingerprint(wildcards):
        paths = []
        for function in inputs:
            named = function(wildcards)
            paths += [named] if isinstance(named, str) else list(named)
        return file_fingerprint(paths)

    return fingerprint


def _code_version(*packages, suffixes=None, exclude=()):
    """sha256 (16 hex digits) of the files of these packages of bioscan_rebuild and of core/, a params value: a job
    re-runs when the code that makes its outputs changes (Snakemake's code trigger sees only a rule's own shell
    line). The image stage keeps its hand-raised versions (IMAGE_CODE_VERSION): its photo jobs are the costly ones.
    ``suffixes``: the files that count (default SOURCE_SUFFIXES: the code and the package data it reads);
    ``exclude``: files (relative to the package) that are a job's inputs instead."""
    suffixes = suffixes or SOURCE_SUFFIXES
    digest = hashlib.sha256()
    base = os.path.join(workflow.basedir, "workflow", "bioscan_rebuild")
    for package in ("core", *packages):
        for folder, subfolders, files in os.walk(os.path.join(base, package)):
            subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
            for name in sorted(files):
                if not name.endswith(suffixes):  # not an editor's backup or a stray file
                    continue
                path = os.path.join(folder, name)
                if os.path.relpath(path, base) in exclude:
                    continue
                digest.update(os.path.relpath(path, base).encode() + b"\0")
                with open(path, "rb") as handle:
                    digest.update(handle.read())
    return digest.hexdigest()[:16]


# what the stages' code is made of: sources and the package data they read (tables, shapes)
SOURCE_SUFFIXES = (".py", ".tsv", ".csv", ".json", ".ttl", ".yaml")
# the packages each stage's jobs run (stats builds its rows with export's spool reader)
CODE = {
    "ingest": _code_version("ingest"),
    "images": _code_version("images"),  # the whole-table job only: the photo jobs keep IMAGE_CODE_VERSION
    # the label corrections and fixes it ships are inputs, their rows a parameter (taxonomy_table_rows): a comment
    # added to them re-ran curation and all after it
    "metadata": _code_version(
        "metadata", exclude=("metadata/tables/taxonomy_fixes.tsv", "metadata/tables/corrections.tsv")
    ),
    # the barcode jobs read none of the taxonomy tables: a maintainer's label fix re-ran every shard's cleaning
    "barcodes": _code_version("metadata", suffixes=(".py",)),
    "splits": _code_version("splits"),
    "stats": _code_version("stats", "export"),
    "export": _code_version("export"),
}


def folder_fingerprint(wildcards):
    """sha256 of every file's relative path, size, mtime and whether it can be read under a batch's image folder:
    a params value, so that a photo replaced or edited in place (which leaves the folder's own mtime alone), or
    given read access, re-runs its listing, and the inventory then confirms by hash what changed. One stat per
    file each time the DAG is built (and an access check for a file not readable by all).
    """
    digest = hashlib.sha256()
    root = images_of(wildcards)
    seen = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen or not os.path.isdir(folder):
            continue
        seen.add(real)
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file():
                    facts = entry.stat()
                    rel = os.path.relpath(entry.path, root)
                    # a photo made readable (chmod, which keeps size and mtime) is read again; one readable by
                    # all (nearly every photo) needs no access check, a system call per file
                    everyone_reads = facts.st_mode & 0o444 == 0o444
                    unreadable = "" if everyone_reads or os.access(entry.path, os.R_OK) else "\0unreadable"
                    digest.update(
                        f"{rel}\0{facts.st_size}\0{facts.st_mtime_ns}{unreadable}\n".encode(
                            "utf-8", "surrogateescape"
                        )
                    )
    return digest.hexdigest()


def image_dir_args(wildcards):
    return f"{wildcards.batch}={images_of(wildcards)}"


def shard_join_inputs(wildcards):
    group = GROUP_OF_SHARD[wildcards.shard]
    return {
        "records": [
            f"results/ingest/exports/{batch}/records/{wildcards.shard}.parquet"
            for batch in EXPORT_BATCHES
        ],
        "inventory": [
            f"results/ingest/images/{batch}/inventory/{group}.parquet"
            for batch in IMAGE_BATCHES
        ],
        "rejected_keys": [
            f"results/ingest/exports/{batch}/rejected_keys/{wildcards.shard}.parquet"
            for batch in EXPORT_BATCHES
        ],
    }


def shard_photo_tables(wildcards):
    group = GROUP_OF_SHARD[wildcards.shard]
    return [f"results/images/photos/{batch}/{group}.parquet" for batch in IMAGE_BATCHES]


def shard_number_args(wildcards):
    """For a join whose inventory files cover groups of shards: which shard's photos it takes."""
    if config["photo_job_shards"] == 1:
        return ""
    return f"--shard {SHARDS.index(wildcards.shard)} --shards {len(SHARDS)}"


def shell_words(values):
    return " ".join(shlex.quote(str(value)) for value in values)


def stage_params_json(section, drop=(), keep=None, **override):
    """One stage's parameter document: its config section (the schema fills the defaults) as JSON,
    which the stage's dataclass in bioscan_rebuild.core.params parses strictly. `keep`: only the
    keys a step reads, so that changing another key does not re-run that step's jobs."""
    values = {**config[section], **override}
    return json.dumps(
        {
            key: value
            for key, value in values.items()
            if key not in drop and (keep is None or key in keep)
        },
        sort_keys=True,
    )


PARSE_PARAMS_JSON = stage_params_json("ingest", keep=("markers", "missing_values"))
JOIN_PARAMS_JSON = stage_params_json(
    "ingest", keep=("duplicate_policy", "require_images", "markers")
)


def list_params_json(wildcards):
    return stage_params_json(
        "ingest",
        keep=("image_name_pattern",),
        image_name_pattern=name_pattern_of(wildcards),
    )


IMAGE_PARAMS_JSON = stage_params_json(
    "images", drop=("detector", "contact_sheet_size", "box_corrections")
)
DETECTOR = config["images"]["detector"]
# the photo jobs' software under --software-deployment-method conda: the yolo backend runs on torch, which the
# light image environment leaves out
PHOTO_ENV = "../../envs/yolo.yaml" if DETECTOR["backend"] == "yolo" else "../../envs/images.yaml"
# the fusion backend's own version (its answers changed without the stage's or the classical detector's): a
# parameter of the photo jobs, so that they run again; its results are stored under keys of their own
DETECTOR_VERSION = (
    _source_constant("detect/fusion.py", "VERSION") if DETECTOR["backend"] == "fusion" else DETECTOR["backend"]
)


def detector_gpus(wildcards):
    """On a cluster the torch YOLO backend's jobs ask for a GPU (--gpus) unless their batch's device is the CPU;
    the classical and onnx backends run on the CPU."""
    device = batch_detector_params(wildcards.batch).get("device")
    return int(DETECTOR["backend"] == "yolo" and str(device or "cuda").lower() not in ("cpu", "mps"))


# A photo job's time limit on a cluster (minutes): 4 h holds ~350k photos with the fusion backend (41 ms each).
# A job stopped at its limit keeps every photo it finished in the store, so its retry (profiles/slurm: retries)
# does only the rest, with twice the time.
PHOTO_JOB_MINUTES = 240


def photo_job_runtime(wildcards, attempt):
    return PHOTO_JOB_MINUTES * 2 ** (attempt - 1)


def more_each_attempt(mb):
    """A whole-table job's memory request (MB), grown with each attempt: a job killed for memory on a cluster that
    enforces it (SLURM's OUT_OF_MEMORY: a larger release than the 5.15M records these were measured on) asks
    twice as much on its first retry and three times on its second (profiles/slurm: retries 2), where the same
    request would be killed again."""

    def request(wildcards, attempt):
        return mb * attempt

    return request


def batch_detector_params(batch):
    """The detector parameters of one image batch: the config's, with the batch's overrides."""
    return {**DETECTOR["params"], **(BATCHES[batch].get("detector_params") or {})}


SHIPPED_MODEL_FILES = {
    "model": _source_constant("detect/shipped.py", "MODEL"),
    "rule": _source_constant("detect/shipped.py", "FUSION_RULE"),
}


def _detector_files(batch):
    """(model files the batch's detector reads by a configured path, shipped ones it reads instead)."""
    params = batch_detector_params(batch)
    weights = DETECTOR["weights"] or params.get("weights")
    rule_file = params.get("rule") if DETECTOR["backend"] == "fusion" else None
    shipped = []
    if DETECTOR["backend"] in ("onnx", "fusion") and not weights:
        shipped.append(SHIPPED_MODEL_FILES["model"])
    if DETECTOR["backend"] == "fusion" and not rule_file:
        shipped.append(SHIPPED_MODEL_FILES["rule"])
    return [path for path in (weights, rule_file) if path], shipped


def detector_weights(wildcards):
    return _detector_files(wildcards.batch)[0]


def shipped_model_paths(batch):
    """The shipped model files the batch's detector reads. Not inputs of the photo jobs (an input's path is relative
    to the working folder, so a project or checkout moved elsewhere would re-run every photo job): the provenance
    plan names them as files those jobs used, so the graph gives each with its sha256 (a release named neither
    model nor rule), and their sha256 is a parameter (shipped_model_of)."""
    folder = os.path.join(PACKAGE_DIR, "bioscan_rebuild", "detect", "models")
    return [os.path.join(folder, name) for name in _detector_files(batch)[1]]


_SHIPPED_SHA256 = {}


def shipped_model_of(wildcards):
    """sha256 of each shipped model file (package data) the batch's detector reads: a parameter of the photo
    jobs, so that shipping a new model or refitting its rule re-runs them (by content, not file times)."""
    digests = {}
    for name in _detector_files(wildcards.batch)[1]:
        if name not in _SHIPPED_SHA256:
            path = os.path.join(PACKAGE_DIR, "bioscan_rebuild", "detect", "models", name)
            with open(path, "rb") as handle:
                _SHIPPED_SHA256[name] = hashlib.sha256(handle.read()).hexdigest()
        digests[name] = _SHIPPED_SHA256[name]
    return json.dumps(digests, sort_keys=True)


def weights_option(wildcards):
    return (
        f"--weights {shlex.quote(DETECTOR['weights'])}" if DETECTOR["weights"] else ""
    )


BOX_CORRECTIONS = config["images"]["box_corrections"]


def box_corrections_input(wildcards):
    # ancient: `bioscan-rebuild review` rewrites the file's commented queue after every run; only its answer rows
    # (box_corrections_answers) may re-run the photo jobs, not its time
    return [ancient(BOX_CORRECTIONS)] if BOX_CORRECTIONS else []


@functools.lru_cache(maxsize=None)  # one read per run: every photo job of every batch asks for the same file
def table_rows(path, added_columns=()):
    """sha256 of a maintainer's table's rows (not its # comments, blank lines or line ends, as core/tsv.py reads
    it): a params value, so that a changed row re-runs the jobs reading it and a comment or a new mtime does not
    (the file is an ancient() input). ``added_columns``: header columns `review` appends, which change no row."""
    try:
        with open(path, "rb") as handle:
            # lines end at \n only, a byte-order mark is no text; a note a spreadsheet quoted ("#) is a comment
            lines = handle.read().removeprefix(codecs.BOM_UTF8).split(b"\n")
    except OSError:
        return "absent"
    rows = [line.rstrip() for line in lines if line.strip() and not line.lstrip().startswith((b"#", b'"#'))]
    if rows:  # the header without the columns review adds, wherever a maintainer's header had them already
        names = [name for name in rows[0].split(b"\t") if name.strip().strip(b'"') not in added_columns]
        rows[0] = b"\t".join(names).rstrip()
    return hashlib.sha256(b"\n".join(rows)).hexdigest()


def box_corrections_answers(wildcards):
    """The corrections file's answer rows (table_rows): a changed answer re-runs the photo jobs and a refreshed
    review queue does not."""
    if not BOX_CORRECTIONS:
        return ""
    # review adds image_sha256 and offered_box to a header without them: no answer changes
    return table_rows(BOX_CORRECTIONS, added_columns=(b"image_sha256", b"offered_box"))


def box_corrections_option(wildcards):
    return (
        f"--box-corrections {shlex.quote(BOX_CORRECTIONS)}" if BOX_CORRECTIONS else ""
    )


def batch_detector_params_json(wildcards):
    return json.dumps(batch_detector_params(wildcards.batch), sort_keys=True)


TAXONOMY = config["taxonomy"]
TAXONOMY_PARAMS_JSON = stage_params_json("taxonomy", drop=("fixes", "corrections"))


SHIPPED_TABLE_FILES = {"fixes": "taxonomy_fixes.tsv", "corrections": "corrections.tsv"}


def _taxonomy_table(key, value):
    """`shipped`: the package's own table, named relative to the working directory so that a
    moved checkout keeps the same inputs; anything else is a path as given."""
    if value != "shipped":
        return value
    shipped = os.path.join(
        PACKAGE_DIR, "bioscan_rebuild", "metadata", "tables", SHIPPED_TABLE_FILES[key]
    )
    return os.path.relpath(shipped)


TAXONOMY_TABLES = {
    key: _taxonomy_table(key, TAXONOMY[key])
    for key in ("fixes", "corrections")
    if TAXONOMY[key]
}


def taxonomy_tables(wildcards):
    # ancient: a comment added, or the file touched, re-ran curation and everything after it (~22 min at 5.15M);
    # its rows (taxonomy_table_rows) re-run it
    return [ancient(path) for path in TAXONOMY_TABLES.values()]


def taxonomy_table_rows(wildcards):
    return json.dumps({key: table_rows(path) for key, path in TAXONOMY_TABLES.items()}, sort_keys=True)


def taxonomy_table_args(wildcards):
    return shell_words(f"--{key}={path}" for key, path in TAXONOMY_TABLES.items())


PREVIOUS = config["release"]["previous"]
# The previous release's metadata CSV: the splits are frozen from it, and the release diff is against it.
PREVIOUS_CSV = (
    os.path.join(
        PREVIOUS,
        "bioscan5m",
        "metadata",
        "csv",
        "BIOSCAN_5M_Insect_Dataset_metadata.csv",
    )
    if PREVIOUS
    else None
)
# A release's split history (every record any version released) when it has one: a record left out of the
# previous version keeps the split an earlier one gave it
PREVIOUS_SPLITS = (
    os.path.join(PREVIOUS, "bioscan5m", "metadata", "split_history.csv")
    if PREVIOUS
    and os.path.isfile(os.path.join(PREVIOUS, "bioscan5m", "metadata", "split_history.csv"))
    else PREVIOUS_CSV
)
FREEZE = config["splits"]["freeze"] or PREVIOUS_SPLITS


def missing_sources():
    """The files and folders the config names that are not there. `all` asks for them, so that the run stops
    with Snakemake's missing-input error naming them: a delivery deleted after a run kept its old outputs (the
    release still held its records, the provenance graph lost its jobs) and exited 0."""
    named = [
        batch[key] for batch in BATCHES.values() for key in ("export", "images") if batch.get(key)
    ]
    named += list(TAXONOMY_TABLES.values())
    named += [path for path in (BOX_CORRECTIONS, FREEZE) if path]
    # a detector model or fusion file by path: gone after a run, the photo jobs were left out and the release kept
    # the old boxes under a config naming the missing model (a path train_detector makes is made)
    named += [path for batch in IMAGE_BATCHES for path in _detector_files(batch)[0]]
    return sorted({path for path in named if not _source_exists(path)})


def split_freeze(wildcards):
    if FREEZE == PREVIOUS_SPLITS and FREEZE:
        return [FREEZE, os.path.join(PREVIOUS, "MANIFEST.json")]
    return [FREEZE] if FREEZE else []


def split_freeze_arg(wildcards):
    if not FREEZE:
        return ""
    if FREEZE == PREVIOUS_SPLITS:  # a published release's file: it must be the one its manifest lists
        manifest = os.path.join(PREVIOUS, "MANIFEST.json")
        return f"--freeze {shlex.quote(FREEZE)} --freeze-manifest {shlex.quote(manifest)}"
    return f"--freeze {shlex.quote(FREEZE)}"


def previous_release(wildcards):
    """The previous release's CSV, split history and manifest (whose sha256 the diff summary records)."""
    if not PREVIOUS_CSV:
        return []
    return sorted({PREVIOUS_CSV, PREVIOUS_SPLITS, os.path.join(PREVIOUS, "MANIFEST.json")})


def previous_release_arg(wildcards):
    return f"--previous {shlex.quote(PREVIOUS)}" if PREVIOUS else ""


def frozen_table(wildcards):
    """splits.freeze (not a previous release's file): the release carries its missing records into the split history."""
    return [config["splits"]["freeze"]] if config["splits"]["freeze"] else []


def frozen_table_arg(wildcards):
    frozen = config["splits"]["freeze"]
    return f"--freeze {shlex.quote(frozen)}" if frozen else ""


EXPORT_OPTIONS_JSON = stage_params_json("export", drop=("formats",))
BARCODE_PARAMS_JSON = stage_params_json("barcodes")


# Provenance plan (called in provenance.smk, once every rule is defined).
# Rules outside the provenance plan: targets, the plan itself, and what consumes the graph.
NOT_PLANNED = (
    *("all", "train_detector", "train_detector_fold", "provenance_plan", "provenance", "release"),
    "audit",  # reads the release the graph is part of
)


def _wildcard_sets(rule):
    values = {"batch": list(BATCHES), "shard": SHARDS, "group": list(PHOTO_GROUPS)}
    combos = [{}]
    for name in sorted(rule.wildcard_names):
        combos = [{**combo, name: value} for combo in combos for value in values[name]]
    return combos


def _flat(value):
    if isinstance(value, dict):
        return [path for item in value.values() for path in _flat(item)]
    if isinstance(value, (list, tuple)):
        return [path for item in value for path in _flat(item)]
    return [str(value)]


# a name _relative gave a path in the checkout -> where that file is, so that _source_exists looks there
_CHECKOUT_NAMES = {}


def _relative(path):
    """Paths in the repository relative to it: the graph must not name the checkout's location."""
    absolute = os.path.abspath(path)
    base = os.path.abspath(workflow.basedir)
    if not absolute.startswith(os.path.join(base, "")):
        return path
    name = os.path.relpath(absolute, base)
    _CHECKOUT_NAMES[name] = absolute
    return name


def _planned_job(rule, wildcards):
    namespace = types.SimpleNamespace(**wildcards)
    try:
        inputs = [
            path
            for item in getattr(rules, rule.name).input
            for path in _flat(
                item(namespace) if callable(item) else str(item).format(**wildcards)
            )
        ]
    except KeyError:
        return (
            None  # a batch without an export or without photos has no job of this rule
        )
    if rule.name == "process_photos":  # files the job reads that are no inputs (shipped_model_paths)
        inputs += shipped_model_paths(wildcards["batch"])
    outputs = [
        str(path).format(**wildcards) for path in getattr(rules, rule.name).output
    ]
    params = {}
    for name, value in rule.params.items():
        # not parameters: the command, output folders, the table paths (their files are inputs, hashed) and the
        # size-and-mtime fingerprints of a photo folder or input files (re-run triggers; the graph hashes them)
        if name in ("cli", "outdir", "tables", "files", "fingerprint"):
            continue
        try:
            value = value(namespace) if callable(value) else value
        except KeyError:  # as for inputs: no job of this rule for this batch
            return None
        params[name] = (
            value
            if isinstance(value, (str, int, float, bool, type(None)))
            else str(value)
        )
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    return {
        "rule": rule.name,
        "wildcards": wildcards,
        "inputs": sorted({_relative(path) for path in inputs}),
        "outputs": outputs,
        "params_sha256": digest,
    }


def _source_exists(path):
    """A source file or folder: a name the plan made relative to the checkout (shipped tables) is looked up there,
    any other in the working directory (a delivery gone from it is missing, whatever the checkout holds)."""
    return os.path.exists(_CHECKOUT_NAMES.get(path, path))


def _plan():
    """Every job of the `all` target: candidates from each rule and wildcard value, kept when each of their
    inputs is a source that exists or another kept job's output (this drops, say, photo jobs of an export-only
    batch)."""
    candidates = [
        job
        for rule in workflow.rules
        if rule.name not in NOT_PLANNED
        for wildcards in _wildcard_sets(rule)
        for job in [_planned_job(rule, wildcards)]
        if job is not None
    ]
    made = {path for job in candidates for path in job["outputs"]}
    # what rules outside the plan make (a model train_detector writes, that images.detector names) is a source
    # of the plan: the run makes it before the jobs that read it (dropping those left photo jobs out of the graph)
    unplanned = {
        str(path).format(**wildcards)
        for rule in workflow.rules
        if rule.name in NOT_PLANNED and set(rule.wildcard_names) <= {"batch", "shard", "group"}
        for wildcards in _wildcard_sets(rule)
        for path in getattr(rules, rule.name).output
    }
    sources = {
        path: path in unplanned or _source_exists(path)
        for job in candidates
        for path in job["inputs"]
        if path not in made
    }
    # one pass per level of the DAG over the jobs not yet kept (a list search per job was quadratic: seconds of
    # parsing for every cluster job of a large run)
    kept, known, pending = [], set(), candidates
    while True:
        ready = [
            job
            for job in pending
            if all(path in known or sources.get(path, False) for path in job["inputs"])
        ]
        if not ready:
            return sorted(
                kept, key=lambda job: (job["rule"], sorted(job["wildcards"].items()))
            )
        kept += ready
        known |= {path for job in ready for path in job["outputs"]}
        taken = {id(job) for job in ready}
        pending = [job for job in pending if id(job) not in taken]


def _git_revision():
    """The code's revision, when this checkout is a git repository: the last commit that changed the workflow's
    code (a commit of the docs alone re-ran the plan, the graph, the release and the audit), "-modified" when the
    code, tracked or not, differs from it. None, said on the console, where it cannot be known: a shallow clone
    whose oldest commit is the last found to change the code (git cannot tell whether it did: that commit was
    named, another release than a full clone's of the same code), a copy of the code inside a repository that does
    not track it, or a checkout git will not read (another owner's: `safe.directory`) or no git program."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", workflow.basedir, *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    try:
        head = git("rev-list", "-1", "HEAD", "--", "workflow", "Snakefile")
        if not head:  # a copy of the code inside another repository, which does not track it
            _say_no_revision("this folder's code is not tracked by the git repository it lies in")
            return None
        # a commit at a shallow clone's edge has no parent to compare with: it seems to change every file
        shallow = git("rev-parse", "--path-format=absolute", "--git-path", "shallow")
        if os.path.isfile(shallow) and head in Path(shallow).read_text().split():
            _say_no_revision(
                "a shallow clone: git cannot tell whether its oldest commit changed the workflow's code, so the "
                "last commit that did cannot be known (git fetch --unshallow names it)"
            )
            return None
        dirty = git(
            "status",
            "--porcelain",
            "--untracked-files=normal",  # a new module the stage imports is a change too
            "--",
            "workflow",
            "Snakefile",
        )
    except (OSError, subprocess.CalledProcessError) as error:
        if _in_git_checkout(workflow.basedir):  # a tarball's folder has no revision to name: nothing to say
            reason = getattr(error, "stderr", None) or str(error)
            _say_no_revision(f"git cannot read this checkout ({reason.strip()[:300]})")
        return None
    return f"{head}-modified" if dirty else head


def _in_git_checkout(folder):
    folder = os.path.abspath(folder)
    while True:
        if os.path.exists(os.path.join(folder, ".git")):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent


def _say_no_revision(why):
    if workflow.is_main_process:  # once per run, not from every cluster job's own Snakemake
        print(f"warning: the release names no git revision of the code: {why}", file=sys.stderr)


# The statistics stage's tables and figures (bioscan_rebuild.stats; a test checks these lists against it).
STATS_TABLES = [
    "label_completeness",
    "records_per_order",
    "records_per_family",
    "species_sizes",
    "bins_per_species",
    "species_per_bin",
    "countries",
    "provinces",
    "sites",
    "genetic_distances",
    "genetic_histogram",
    "size_fields",
    "size_histogram",
    "split_table",
]
STATS_FIGURES = {  # figure -> the report's subcategory
    "splits": "Splits",
    "label_completeness": "Taxonomy",
    "records_per_order": "Taxonomy",
    "records_per_family": "Taxonomy",
    "species_long_tail": "Taxonomy",
    "bins_species": "Taxonomy",
    "countries": "Geography",
    "site_map": "Geography",
    "genetic_distances": "Genetics",
    "size_fields": "Size fields",
}


# Detector training (detector.smk): the recipe shared by the model and its out-of-fold models.
TRAIN = config["train_detector"]
# Cores and minutes a training job asks a cluster for (a local run gives it at most --cores): the shipped
# model took 1.5 h on 2 CPU cores; a GPU trains it in minutes.
TRAIN_THREADS = 8
TRAIN_MINUTES = 120 if TRAIN["gpus"] else 480


def train_runtime(wildcards, attempt):
    """A training stopped at its time limit starts again from scratch: each retry has twice the time."""
    return TRAIN_MINUTES * 2 ** (attempt - 1)
OUT_OF_FOLD = TRAIN["out_of_fold"]
if OUT_OF_FOLD and not TRAIN["dev_dirs"]:
    raise ValueError(
        "config: train_detector: out_of_fold leaves out parts of the real photos: it needs dev_dirs"
    )


def train_detector_options():
    """The recipe's options, shared by the model and its out-of-fold models (refit-fusion checks they match)."""
    dev = " ".join(f"--dev-dir {shlex.quote(d)}" for d in TRAIN["dev_dirs"]) or "--no-real"
    classes = f"--classes {shlex.quote(TRAIN['classes'])}" if TRAIN["classes"] else ""
    return (
        f"{dev} {classes} --generated {TRAIN['generated']} --epochs {TRAIN['epochs']} "
        f"--imgsz {TRAIN['imgsz']} --batch {TRAIN['batch']}"
    )


def train_detector_inputs():
    """What the training reads besides its options: each dev folder's boxes and the classes table (declared, so
    an edit to them trains again; the photos are named by the boxes file)."""
    inputs = [os.path.join(d, "coco_annotations.json") for d in TRAIN["dev_dirs"]]
    return inputs + ([TRAIN["classes"]] if TRAIN["classes"] else [])


def fold_dirs():
    return [f"results/detector-fold{fold}of{OUT_OF_FOLD}" for fold in range(OUT_OF_FOLD)]
