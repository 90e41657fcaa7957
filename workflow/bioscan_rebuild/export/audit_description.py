"""Audit, the release's self-description: the files that tell a user what the release is are made again from its
data and must be what the build wrote.

- ``croissant.json``: made again from the released files (their sha256 from the manifest, which check 1 holds
  the files to) with the release's name, version and licence; a field pointed at another column, a record set or
  file dropped, a file set narrowed or a licence edited is named by its place in the document.
- the dataset card (``README.md``): made again from the release's statistics, accounting and diff; the first
  lines that differ are shown.
- each JSON-LD file's context and head nodes (release, build, software, inputs) and its split node, whose
  ``recordCount`` is the split's records in the CSV.
- ``provenance.jsonld``: there, with ``metadata/config.json`` (the card names both); the config it names has the
  sha256 of ``metadata/config.json``; it conforms to the provenance SHACL shapes; each file the release copies
  from the build (``layout.BUILD_COPIES``, the statistics, ``accounting.json``) is one of its files by sha256 and
  size; each batch's export has the accounting's sha256, and a job read each photo folder; each file is derived
  from what the job that made it used.

The documents are made by this package: a release made by another version of bioscan-rebuild (its provenance
says) is only checked for its name, version and licence (``audit.check_version``).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.io import file_sha256
from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.export.card import CARD, CITATION, STATS_DIR, card_text
from bioscan_rebuild.export.formats.croissant import build_croissant, croissant_info
from bioscan_rebuild.export.formats.jsonld import described_text, release_dataset
from bioscan_rebuild.export.layout import (
    ACCOUNTING,
    BUILD_COPIES,
    CONFIG,
    CROISSANT_PATH,
    IMAGES_DIR,
    JSONLD_DIR,
    PROVENANCE,
    RELEASE_DIFF_SUMMARY_PATH,
    ROOT,
)
from bioscan_rebuild.export.release import release_inputs

SHOWN_DIFFERENCES = 5  # per document: the first ones, then a count
EDGE_BYTES = 1 << 16  # a JSON-LD file's head and tail are read from its ends (the records between: gigabytes)


def release_software_version(root: Path) -> str | None:
    """The bioscan-rebuild version ``provenance.jsonld`` says built the release (None where it does not say)."""
    try:
        graph = json.loads((root / PROVENANCE.path).read_text()).get("@graph", [])
        return next(str(n["softwareVersion"]) for n in graph if isinstance(n, dict) and "softwareVersion" in n)
    except (OSError, ValueError, AttributeError, StopIteration):
        return None


def check_description(
    release: Path, manifest: dict, csv: pa.Table, accounting: dict, config: dict | None, options, findings
) -> None:
    """``options``: the release's export options as its files agree on them (``check_version``); None: the files
    do not say which release this is, and nothing is made again."""
    from bioscan_rebuild import __version__

    root = release / ROOT
    _check_provenance_config(root, findings)
    try:
        _check_provenance(release, manifest, accounting, findings)
    except (MemoryError, InputError):
        raise
    except Exception as error:  # json and rdflib raise anything on a damaged graph
        findings.add("unreadable", f"{ROOT}/{PROVENANCE.path}: cannot be read as the build writes it ({error!r:.200})")
    if options is None:
        return
    built_by = release_software_version(root)
    _check_software_versions(root, built_by, findings)
    if built_by is not None and built_by != __version__:
        findings.notes.append(
            f"{ROOT}/{PROVENANCE.path}: built by bioscan-rebuild {built_by}, this audit is {__version__}: "
            "croissant.json, the card and the JSON-LD heads were not made again (audit with the version that built it)"
        )
        return
    # each on its own: one that cannot read its file (a damaged or missing one) leaves the others' findings
    for what, check, args in (
        (f"{ROOT}/{CROISSANT_PATH}", _check_croissant, (release, manifest, options, findings)),
        (CARD, _check_card, (release, options, accounting, findings)),
        (f"{ROOT}/{JSONLD_DIR}", _check_jsonld_ends, (root, csv, options, accounting, findings)),
    ):
        try:
            check(*args)
        except (MemoryError, InputError):
            raise
        except Exception as error:  # json, yaml and the file system raise anything on a damaged release
            findings.add("unreadable", f"{what}: cannot be read as the release writes it ({type(error).__name__})")


def _check_software_versions(root: Path, built_by: str | None, findings) -> None:
    """The version of bioscan-rebuild each JSON-LD file's head names is the one ``provenance.jsonld`` names: that
    one decides whether the self-description is made again, so one edited there turned those checks off."""
    for path in sorted((root / JSONLD_DIR).glob("*.jsonld")):
        try:
            with open(path, "rb") as handle:
                head = handle.read(EDGE_BYTES).decode("utf-8", "replace")
        except OSError:  # gone (a broken link): the manifest check names it; the other checks go on
            continue
        graph = head.find('"@graph"')  # the software node is among its first nodes (the context names the term)
        said = re.search(r'"softwareVersion":\s*"([^"]*)"', head[graph:]) if graph >= 0 else None
        if said and built_by is not None and said.group(1) != built_by:
            findings.add(
                "versions",
                f"{ROOT}/{JSONLD_DIR}/{path.name}: built by bioscan-rebuild {said.group(1)}, "
                f"{ROOT}/{PROVENANCE.path} says {built_by}",
            )


def _build_copies(manifest: dict) -> dict[str, str]:
    """The release's files (manifest paths) that are copies of the build's own files -> the end of that file's path
    (its name, or its place in the statistics folder: ``figures/splits.png``)."""
    stats = f"{ROOT}/{STATS_DIR}/"
    copies = {ACCOUNTING: ACCOUNTING, **{f"{ROOT}/{file.path}": name for file, name in BUILD_COPIES.items()}}
    copies.update({rel: rel[len(stats) :] for rel in manifest if rel.startswith(stats)})
    return {rel: copies[rel] for rel in sorted(copies) if rel in manifest}


def _check_provenance(release: Path, manifest: dict, accounting: dict, findings) -> None:
    """``provenance.jsonld`` against what the release itself holds (the module docstring): a graph with a file's
    hash, a job or a derivation edited, or gone with its Croissant node, passed as whole."""
    root, where = release / ROOT, f"{ROOT}/{PROVENANCE.path}"
    card = release / CARD
    named = card.read_text(encoding="utf-8", errors="replace") if card.is_file() else ""
    for file in (PROVENANCE, CONFIG):  # a release built by hand may ship neither; its card then names neither
        if not (root / file.path).exists() and f"`{ROOT}/{file.path}`" in named:
            findings.add("description", f"{ROOT}/{file.path}: missing (the card names it)")
    path = root / PROVENANCE.path
    if not path.exists():
        return
    conforms, report = _provenance_conforms(path)
    if not conforms:
        findings.add("description", f"{where}: does not conform to the provenance shapes: {report}")
    graph = [node for node in json.loads(path.read_text()).get("@graph", []) if isinstance(node, dict)]
    files = {
        os.path.normpath(str(node["path"])): node
        for node in graph
        if node.get("@type") == "prov:Entity" and isinstance(node.get("path"), str)
    }
    made = {}  # the end of each file's path -> (sha256, size) of the files so named
    for path, node in files.items():
        parts = path.split("/")
        for start in range(len(parts)):
            made.setdefault("/".join(parts[start:]), set()).add((node.get("sha256"), node.get("contentSize")))
    for rel, tail in _build_copies(manifest).items():
        if (manifest[rel]["sha256"], manifest[rel]["bytes"]) not in made.get(tail, set()):
            findings.add(
                "description",
                f"{where}: no file of the build named …/{tail} has {rel}'s sha256 and size (it is a copy of one)",
            )
    batches = accounting.get("batches", {}) if isinstance(accounting.get("batches"), dict) else {}
    by_id = {node.get("@id"): node for node in graph}
    read = {}  # (batch part, batch) -> the file node its job read: by the job, as the maintainer may spell the path
    for node in graph:
        part = SOURCE_RULES.get(node.get("rule"))
        if part is None:
            continue
        batch = json.loads(node.get("wildcards") or "{}").get("batch")
        for used in _listed(node.get("used")):
            read[part, batch] = by_id.get(used, {})
    for name, item in sorted(batches.items()):
        part, _, batch = name.partition(":")
        if part not in ("export", "images") or not isinstance(item, dict):
            continue
        node = read.get((part, batch))
        if node is None:
            findings.add("description", f"{where}: no job read batch {batch}'s {part}, which {ACCOUNTING} lists")
            continue
        if part == "images":  # the graph counts the folder's files, the accounting its entries (links too)
            continue
        key, said = "sha256", item.get("export_sha256")
        held = node.get(key)
        if held != said:
            findings.add(
                "description",
                f"{where}: batch {batch}'s {part} {node.get('path')} has {key} {str(held)[:12]}, "
                f"{ACCOUNTING} says {str(said)[:12]}",
            )
    used = {node.get("@id"): node.get("used", []) for node in graph if node.get("@type") == "prov:Activity"}
    for rel, node in sorted(files.items()):
        job = node.get("wasGeneratedBy")
        if job is not None and sorted(_listed(node.get("wasDerivedFrom"))) != sorted(_listed(used.get(job))):
            findings.add("description", f"{where}: {rel} is derived from other files than its job {job} used")


# The workflow's jobs that read a batch's sources (workflow/rules/ingest.smk), by the accounting's batch parts.
SOURCE_RULES = {"parse_export": "export", "list_images": "images"}


def _listed(value) -> list:
    return [str(item) for item in value] if isinstance(value, list) else [] if value is None else [str(value)]


def _provenance_conforms(path: Path) -> tuple[bool, str]:
    """Whether the graph conforms to the shapes the build's graph is made to (its first violation, shortened)."""
    from bioscan_rebuild.export.formats.jsonld import validate_jsonld
    from bioscan_rebuild.export.provenance import PROVENANCE_SHAPES

    conforms, text, _ = validate_jsonld(path, PROVENANCE_SHAPES)
    if conforms:
        return True, ""
    message = re.search(r"Message: (.*)", text)
    focus = re.search(r"Focus Node: (.*)", text)
    return False, " ".join(part.group(1) for part in (focus, message) if part)[:300]


def _check_provenance_config(root: Path, findings) -> None:
    path, config = root / PROVENANCE.path, root / CONFIG.path
    if not path.exists() or not config.exists():
        return
    graph = json.loads(path.read_text()).get("@graph", [])
    named = [node for node in graph if isinstance(node, dict) and node.get("@id") == "build:config"]
    if not named:
        findings.add("description", f"{ROOT}/{PROVENANCE.path}: names no config (build:config)")
    elif named[0].get("sha256") != file_sha256(config):
        findings.add(
            "description",
            f"{ROOT}/{PROVENANCE.path}: build:config sha256 {str(named[0].get('sha256'))[:12]}…, "
            f"{ROOT}/{CONFIG.path} has {file_sha256(config)[:12]}…",
        )


def _check_croissant(release: Path, manifest: dict, options: ExportOptions, findings) -> None:
    root = release / ROOT
    path = root / CROISSANT_PATH
    if not path.exists():
        return
    under, images = f"{ROOT}/", f"{ROOT}/{IMAGES_DIR}/"
    listed = (rel[len(under) :] for rel in manifest if rel.startswith(under))  # counted, not kept: 20M JPEGs
    singles = {  # the JPEGs are file sets: only the single files are hashed
        rel[len(under) :]: entry
        for rel, entry in manifest.items()
        if rel.startswith(under) and not rel.startswith(images)
    }
    hashes = {rel: entry["sha256"] for rel, entry in singles.items()}
    sizes = {rel: entry["bytes"] for rel, entry in singles.items()}
    info = croissant_info(options, {"citeAs": CITATION})
    remade = build_croissant(root, info=info, listed=listed, hashes=hashes, sizes=sizes)
    released = json.loads(path.read_text())
    for key in ("name", "version", "license"):  # check_version names these (each once)
        if key in released and key in remade:
            remade[key] = released[key]
    _report(f"{ROOT}/{CROISSANT_PATH}", list(_differences(released, remade, "")), findings)


def _differences(said, made, where: str):
    """Where the released document (``said``) differs from the one made again (``made``): a JSON path, nodes of a
    list named by their ``@id``."""
    if isinstance(said, dict) and isinstance(made, dict):
        for key in [*made, *(k for k in said if k not in made)]:
            place = f"{where}.{key}" if where else key
            if key not in said:
                yield f"{place}: missing (the build writes {_short(made[key])})"
            elif key not in made:
                yield f"{place}: {_short(said[key])}, which the build does not write"
            else:
                yield from _differences(said[key], made[key], place)
    elif isinstance(said, list) and isinstance(made, list) and _identified(said) and _identified(made):
        said_ids, made_ids = {n["@id"]: n for n in said}, {n["@id"]: n for n in made}
        for node_id, node in made_ids.items():
            if node_id not in said_ids:
                yield f"{where}[{node_id}]: missing (the build describes it)"
            else:
                yield from _differences(said_ids[node_id], node, f"{where}[{node_id}]")
        for node_id in said_ids.keys() - made_ids.keys():
            yield f"{where}[{node_id}]: described, but the build does not describe it"
        if [n["@id"] for n in said] != list(made_ids) and said_ids.keys() == made_ids.keys():
            yield f"{where}: the nodes in another order"
    elif said != made:
        yield f"{where}: {_short(said)}, the build writes {_short(made)}"


def _identified(nodes: list) -> bool:
    ids = [node.get("@id") for node in nodes if isinstance(node, dict)]
    return len(ids) == len(nodes) and None not in ids and len(set(ids)) == len(ids)


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "…"


def _report(where: str, differences: list[str], findings) -> None:
    for line in differences[:SHOWN_DIFFERENCES]:
        findings.add("description", f"{where}: {line}")
    if len(differences) > SHOWN_DIFFERENCES:
        findings.add("description", f"{where}: and {len(differences) - SHOWN_DIFFERENCES} more differences")


def _check_card(release: Path, options: ExportOptions, accounting: dict, findings) -> None:
    path = release / CARD
    if not path.exists():
        return
    diff = release / ROOT / RELEASE_DIFF_SUMMARY_PATH
    remade = card_text(release, options, accounting, json.loads(diff.read_text()) if diff.is_file() else None)
    _report(CARD, _line_differences(path.read_text(encoding="utf-8"), remade), findings)


def _line_differences(said: str, made: str) -> list[str]:
    """The lines of ``said`` that differ from ``made``'s, by number, matched up as a diff does (one line added
    or dropped is one difference, not every line after it)."""
    said_lines, made_lines = said.split("\n"), made.split("\n")
    out = []
    matcher = difflib.SequenceMatcher(None, said_lines, made_lines, autojunk=False)
    for kind, i1, i2, j1, j2 in matcher.get_opcodes():
        if kind == "replace":
            out += [
                f"line {i + 1}: {_short(said_lines[i])}, the build writes {_short(made_lines[j])}"
                for i, j in zip(range(i1, i2), range(j1, j2))
            ]
            extra = (i2 - i1) - (j2 - j1)
            if extra > 0:
                out += [
                    f"line {i + 1}: {_short(said_lines[i])}, which the build does not write"
                    for i in range(i2 - extra, i2)
                ]
            elif extra < 0:
                out += [f"after line {i2}: the build writes {_short(made_lines[j])}" for j in range(j2 + extra, j2)]
        elif kind == "delete":
            out += [f"line {i + 1}: {_short(said_lines[i])}, which the build does not write" for i in range(i1, i2)]
        elif kind == "insert":
            out += [f"after line {i1}: the build writes {_short(made_lines[j])}" for j in range(j1, j2)]
    return out


def _check_jsonld_ends(root: Path, csv: pa.Table, options: ExportOptions, accounting: dict, findings) -> None:
    counts = {row["values"]: row["counts"] for row in pc.value_counts(csv["split"]).to_pylist()}
    dataset = release_dataset(options, {"inputs": release_inputs(accounting)})
    for path in sorted((root / JSONLD_DIR).glob("*.jsonld")):
        split = path.stem
        if split not in counts:
            continue  # a file of no split the CSV holds: the record check names it
        head, tail = described_text(dataset, split, counts[split])
        where = f"{ROOT}/{JSONLD_DIR}/{path.name}"
        with open(path, "rb") as handle:
            start = handle.read(max(len(head.encode()), EDGE_BYTES)).decode("utf-8", "replace")
            size = handle.seek(0, 2)
            handle.seek(max(0, size - len(tail.encode())))
            end = handle.read().decode("utf-8", "replace")
        if not start.startswith(head):
            said = start[: len(head)]
            _report(where, _line_differences(said.rstrip("\n"), head.rstrip("\n")), findings)
        if end != tail:
            _report(where, _node_differences(end, tail), findings)


def _node_differences(said: str, made: str) -> list[str]:
    """The split node's fields that differ (its text, where the file's end is no node)."""
    made_node = json.loads(made.removeprefix(",\n").removesuffix("\n]}\n"))
    try:
        said_node = json.loads(said.removeprefix(",\n").removesuffix("\n]}\n"))
    except ValueError:
        said_node = None
    if not isinstance(said_node, dict):
        return [f"ends {_short(said[-120:])}, the build writes the split node {_short(made_node)}"]
    return [f"the split node's {line}" for line in _differences(said_node, made_node, "")]
