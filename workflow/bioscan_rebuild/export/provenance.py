"""The build as a PROV-O graph (``metadata/provenance.jsonld``), from the workflow's job plan.

The plan (``workflow/rules/provenance.smk``) lists every job: its rule, wildcards, input and output paths and
the sha256 of its parameters. This module turns it into JSON-LD:

- the build (``prov:Activity``), associated with the software (``prov:SoftwareAgent``: package version, git
  revision when known, Python and library versions), using the resolved config (an entity with its sha256);
- one ``prov:Activity`` per job (``bioscan:rule``, ``bioscan:parametersSha256``), ``prov:wasInformedBy`` the
  build, ``prov:used`` its inputs;
- one ``prov:Entity`` per file with ``bioscan:sha256`` and ``schema:contentSize``; outputs ``prov:wasGeneratedBy``
  their job and ``prov:wasDerivedFrom`` its inputs; a photo folder is an entity with the sha256 of its file
  list (relative names and sizes) and its file count.

No wall-clock time is written: two builds of the same inputs give the same bytes. The graph names the release's
``croissant.json`` (``schema:subjectOf``) when ``export.formats`` builds one, and Croissant lists the graph among
the release's files.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata, resources
from pathlib import Path
from urllib.parse import quote

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import file_sha256, read_json
from bioscan_rebuild.export.formats.jsonld import BIOSCAN_NS

CONTEXT = {
    "prov": "http://www.w3.org/ns/prov#",
    "schema": "https://schema.org/",
    "bioscan": BIOSCAN_NS,  # the release JSON-LD's own terms
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "build": "urn:bioscan-rebuild:build:",
    "used": {"@id": "prov:used", "@type": "@id"},
    "wasGeneratedBy": {"@id": "prov:wasGeneratedBy", "@type": "@id"},
    "wasDerivedFrom": {"@id": "prov:wasDerivedFrom", "@type": "@id"},
    "wasInformedBy": {"@id": "prov:wasInformedBy", "@type": "@id"},
    "wasAssociatedWith": {"@id": "prov:wasAssociatedWith", "@type": "@id"},
    "subjectOf": {"@id": "schema:subjectOf", "@type": "@id"},
    "path": "bioscan:path",
    "rule": "bioscan:rule",
    "wildcards": "bioscan:wildcards",
    "sha256": "bioscan:sha256",
    "fileListSha256": "bioscan:fileListSha256",
    "fileCount": {"@id": "bioscan:fileCount", "@type": "xsd:integer"},
    "parametersSha256": "bioscan:parametersSha256",
    "contentSize": {"@id": "schema:contentSize", "@type": "xsd:integer"},
    "name": "schema:name",
    "softwareVersion": "schema:softwareVersion",
    "gitRevision": "bioscan:gitRevision",
    "dependencies": "bioscan:dependencies",
}
PROVENANCE_SHAPES = Path(str(resources.files("bioscan_rebuild.export.formats") / "provenance.shacl.ttl"))
# The libraries whose versions change what the build writes.
LIBRARIES = (
    "snakemake",
    "numpy",
    "pandas",
    "pyarrow",
    "pillow",
    "opencv-python",
    "simplejpeg",
    "onnxruntime",  # the learned and fusion detectors' boxes
    "biopython",
    "matplotlib",  # the released figures
    "h5py",
    "rdflib",
)


def _file_id(path: str) -> str:
    return "build:files/" + quote(path, safe="")


def _job_id(job: dict) -> str:
    wildcards = ",".join(f"{k}={v}" for k, v in sorted(job["wildcards"].items()))
    return "build:jobs/" + quote(job["rule"] + (f"({wildcards})" if wildcards else ""), safe="")


def _folder_digest(folder: Path) -> tuple[str, int]:
    """sha256 of a photo folder's file list (relative name and size, sorted), and its file count."""
    entries = sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    text = "".join(f"{name}\0{size}\n" for name, size in entries)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest(), len(entries)


def _software(git_revision: str | None) -> dict:
    from bioscan_rebuild import __version__

    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue
    node = {
        "@id": "build:software",
        "@type": ["prov:SoftwareAgent", "schema:SoftwareApplication"],
        "name": "bioscan-rebuild",
        "softwareVersion": __version__,
        "dependencies": json.dumps({"python": platform.python_version(), **versions}, sort_keys=True),
    }
    if git_revision:
        node["gitRevision"] = git_revision
    return node


def provenance_graph(
    plan: dict, *, base: Path = Path("."), code_root: Path | None = None, release_id: str | None = None
) -> dict:
    """The JSON-LD document of a build; paths of ``plan`` are read relative to ``base`` (the working directory),
    or to ``code_root`` (the workflow's checkout: its shipped tables) where ``base`` has no such file."""
    config_text = json.dumps(plan["config"], indent=2, sort_keys=True) + "\n"
    config_sha = hashlib.sha256(config_text.encode()).hexdigest()
    graph = [
        {
            "@id": "build:run",
            "@type": "prov:Activity",
            "name": "bioscan-rebuild workflow run",
            "used": ["build:config"],
            "wasAssociatedWith": "build:software",
        },
        _software(plan.get("git_revision")),
        {"@id": "build:config", "@type": "prov:Entity", "name": "the resolved config", "sha256": config_sha},
    ]
    formats = plan["config"].get("export", {}).get("formats", ["croissant"])
    if release_id and "croissant" in formats:  # a release built without it has no croissant.json to point at
        graph[0]["subjectOf"] = f"{release_id}/croissant.json"
    made = {path: job for job in plan["jobs"] for path in job["outputs"]}
    entities, missing = {}, []
    for job in plan["jobs"]:
        graph.append(
            {
                "@id": _job_id(job),
                "@type": "prov:Activity",
                "rule": job["rule"],
                "wildcards": json.dumps(job["wildcards"], sort_keys=True),
                "parametersSha256": job["params_sha256"],
                "wasInformedBy": "build:run",
                "wasAssociatedWith": "build:software",
                "used": [_file_id(path) for path in job["inputs"]],
            }
        )
        for path in [*job["inputs"], *job["outputs"]]:
            if path in entities:
                continue
            node = {"@id": _file_id(path), "@type": "prov:Entity", "path": path}
            full = base / path
            if not full.exists() and code_root is not None:
                full = code_root / path
            if full.is_dir():
                node["fileListSha256"], node["fileCount"] = _folder_digest(full)
            elif full.is_file():
                node["sha256"], node["contentSize"] = file_sha256(full), full.stat().st_size
            else:
                missing.append(path)
            if path in made:
                maker = made[path]
                node["wasGeneratedBy"] = _job_id(maker)
                node["wasDerivedFrom"] = [_file_id(source) for source in maker["inputs"]]
            entities[path] = node
    if missing:  # a file entity without its hash says nothing (and breaks the graph's own shapes)
        shown = ", ".join(sorted(missing)[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(
            f"{len(missing)} file(s) of the plan are not there: {shown}; run the command in the workflow's folder "
            "(the plan's paths are relative to it) after the jobs that make them"
        )
    graph += [entities[path] for path in sorted(entities)]
    # the build's nodes under the release's IRI: two versions' graphs loaded together must not merge their runs,
    # configs and files into nodes with two sha256 each
    context = {**CONTEXT, "build": f"{release_id}/build/"} if release_id else CONTEXT
    return {"@context": context, "@graph": graph}


def release_id(config: dict) -> str:
    """The release's IRI as the JSON-LD names it (``formats.jsonld``: urn:bioscan-rebuild:release:<name>:<version>)."""
    export = config.get("export", {})
    name, version = str(export.get("name", "")), str(export.get("version", ""))
    return f"urn:bioscan-rebuild:release:{quote(name, safe='')}:{quote(version, safe='')}"


def write_provenance(plan_path, output, config_output, *, base: Path = Path("."), code_root=None) -> dict:
    """Read the plan, write the graph to ``output`` and the resolved config to ``config_output``. ``code_root``:
    the workflow checkout (default: $BIOSCAN_REBUILD_BASEDIR, which the workflow's shell prefix sets)."""
    import os

    from bioscan_rebuild.core.io import atomic_path

    plan = read_json(plan_path, "a workflow plan", ("jobs", "config"))
    code_root = code_root or os.environ.get("BIOSCAN_REBUILD_BASEDIR")
    document = provenance_graph(
        plan, base=base, code_root=Path(code_root) if code_root else None, release_id=release_id(plan["config"])
    )
    with atomic_path(output) as temporary:
        temporary.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    with atomic_path(config_output) as temporary:
        temporary.write_text(json.dumps(plan["config"], indent=2, sort_keys=True) + "\n")
    jobs = len(plan["jobs"])
    return {"jobs": jobs, "entities": len(document["@graph"]) - jobs - 3}
