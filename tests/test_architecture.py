"""The package's shape holds: no import circle, data flows one way between stages, no stage reaches into another's
private helpers or outside the package, and each stage's parameter dataclass agrees with the config schema."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from bioscan_rebuild.core.params import BarcodeParams, ExportOptions, ImageParams, IngestParams, TaxonomyParams
from conftest import REPO

PACKAGE = REPO / "workflow" / "bioscan_rebuild"

# Who may import whom: a stage imports core and the stages before it, never one after it. The sample generator
# (synth) is test data: only the command line uses it. cli composes everything.
LAYERS = {
    "core": 0,
    "synth": 1,
    "ingest": 1,
    "detect": 2,
    "images": 3,
    "metadata": 4,
    "splits": 5,
    "export": 6,
    "stats": 7,  # the release's statistics: reads what export wrote; only cli imports it
    "cli": 8,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import of the package, at any depth (function-level imports too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bioscan_rebuild"):
            assert node.level == 0, f"{path}: relative import (the package uses absolute imports)"
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith("bioscan_rebuild")]
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for module, names in _imports(path):
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
            targets = submodules or [module]
            # importing a.b.c runs a/__init__ and a/b/__init__ first: those are edges too
            parents = {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 1)}
            edges.update(targets, parents & set(MODULES))
        edges.discard(name)
        graph[name] = edges
    return graph


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_the_graph_is_read():
    graph = _graph()
    assert {"bioscan_rebuild.core.schemas", "bioscan_rebuild.cli", "bioscan_rebuild.detect.registry"} <= set(graph)
    assert "bioscan_rebuild.core.schemas" in graph["bioscan_rebuild.ingest.bold"]
    assert "bioscan_rebuild.core" in graph["bioscan_rebuild.ingest.bold"]  # the parent package runs first
    assert set(LAYERS) == {_stage(m) for m in MODULES if _stage(m) and MODULES[m].parent != PACKAGE}


def test_no_import_circle():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, f"import circles: {cycles}"


def test_stages_import_only_earlier_stages():
    wrong = []
    for module, edges in _graph().items():
        stage = _stage(module)
        if stage not in LAYERS:
            continue
        for target in edges:
            other = _stage(target)
            if other in LAYERS and other != stage and LAYERS[other] >= LAYERS[stage]:
                wrong.append(f"{module} -> {target}")
            elif other == "synth" and stage not in ("synth", "cli"):
                wrong.append(f"{module} -> {target} (test data)")
    assert not wrong, (
        "imports against the flow core -> ingest -> detect -> images -> metadata -> splits -> export -> stats:\n"
        + ("\n".join(sorted(wrong)))
    )


def test_no_stage_imports_another_stages_private_helpers():
    wrong = []
    for module, path in MODULES.items():
        for source, names in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and _stage(source) != _stage(module):
                wrong.append(f"{module}: {private} from {source}")
    assert not wrong, "\n".join(wrong)


def test_the_package_does_not_reach_outside_itself():
    """Resources are package data (importlib.resources): no path climbing out of the package, no ../shared."""
    wrong = []
    for module, path in MODULES.items():
        text = path.read_text()
        for needle in (".parents[", "__file__", "realdata", "../shared", '"shared"'):
            if needle in text:
                wrong.append(f"{module}: {needle}")
    assert not wrong, "\n".join(wrong)


def _schema_section(name: str) -> dict:
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return schema["properties"][name]["properties"]


# config section -> (dataclass, keys of the section that are not the stage's parameters)
SECTIONS = {
    "ingest": (IngestParams, set()),
    "images": (ImageParams, {"detector", "contact_sheet_size", "box_corrections"}),
    "barcodes": (BarcodeParams, set()),
    "taxonomy": (TaxonomyParams, {"fixes", "corrections"}),
    "export": (ExportOptions, {"formats"}),
}


@pytest.mark.parametrize("section", SECTIONS)
def test_one_set_of_defaults_the_config_schemas(section):
    cls, other_keys = SECTIONS[section]
    properties = _schema_section(section)
    assert {f.name for f in dataclasses.fields(cls)} == set(properties) - other_keys
    defaults = cls().as_dict()
    assert defaults == {key: properties[key]["default"] for key in defaults}


@pytest.mark.parametrize("section", SECTIONS)
def test_the_command_lines_limits_are_the_schemas(section):
    """The commands refuse what the schema refuses (a string, a negative length, an unknown policy): their copy of
    the schema's limits is the schema's."""
    cls, other_keys = SECTIONS[section]
    wanted = ("minimum", "maximum", "exclusiveMinimum", "enum", "minItems", "maxItems", "pattern")
    expected = {}
    for key, spec in _schema_section(section).items():
        if key in other_keys:
            continue
        limits = {k: v for k, v in {**spec, **spec.get("items", {})}.items() if k in wanted}
        if limits:
            expected[key] = {k: tuple(v) if isinstance(v, list) else v for k, v in limits.items()}
    assert expected == cls.RULES


@pytest.mark.parametrize(
    "cls, document, phrase",
    [
        (BarcodeParams, {"min_length": "x"}, "barcodes.min_length: 'x' is not a whole number"),
        (BarcodeParams, {"min_length": -3}, "barcodes.min_length: -3 is below 1"),
        (BarcodeParams, {"max_ambiguity": 5}, "barcodes.max_ambiguity: 5.0 is above 1"),
        (TaxonomyParams, {"barcode_ratio": 2}, "taxonomy.barcode_ratio: 2.0 is above 1"),
        (TaxonomyParams, {"barcode_ratio": "x"}, "taxonomy.barcode_ratio: 'x' is not a number"),
        (TaxonomyParams, {"scope_taxa": "Arthropoda"}, "taxonomy.scope_taxa: 'Arthropoda' is not a list"),
        (IngestParams, {"duplicate_policy": "newest"}, "ingest.duplicate_policy: 'newest' is not one of"),
        (IngestParams, {"markers": "COI-5P"}, "ingest.markers: 'COI-5P' is not a list"),
        (IngestParams, {"require_images": "false"}, "ingest.require_images: 'false' is not true or false"),
        (ImageParams, {"pad_color": [0, 0, 300]}, "images.pad_color: 300 is above 255"),
        (ImageParams, {"aspect": [4, 3, 1]}, "images.aspect: [4, 3, 1] has 3 items, not 2"),
        (ExportOptions, {"hdf5_batch": 0}, "export.hdf5_batch: 0 is below 1"),
        # the schema's minItems and patterns too: no marker refused every record, silently (exit 0)
        (IngestParams, {"markers": []}, "ingest.markers: [] holds fewer than 1 items"),
        (
            IngestParams,
            {"image_name_pattern": r"^(.+)\.jpg$"},
            "ingest.image_name_pattern: '^(.+)\\\\.jpg$' does not match",
        ),
        (ExportOptions, {"licence": "CC BY 4.0"}, "export.licence: 'CC BY 4.0' does not match"),
    ],
)
def test_a_parameter_of_the_wrong_type_or_out_of_range_is_refused(cls, document, phrase):
    """Only unknown keys were refused: a string length failed deep in numpy with a traceback, a string marker
    list was read letter by letter, and a negative length or a ratio of 2 ran."""
    from bioscan_rebuild.core.errors import InputError

    with pytest.raises(InputError) as caught:
        cls.from_dict(document)
    assert phrase in str(caught.value)
    assert BarcodeParams.from_dict({"min_length": 200.0}).min_length == 200  # a whole float is the number


@pytest.mark.parametrize("section", SECTIONS)
def test_the_rules_parameter_document_parses_strictly(section):
    cls, other_keys = SECTIONS[section]
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())[section]
    document = {k: v for k, v in config.items() if k not in other_keys}
    assert cls.from_dict(document).as_dict() == document
    with pytest.raises(ValueError, match="unknown"):
        cls.from_dict({**document, "misspelt_key": 1})


def test_the_export_formats_are_the_registrys():
    """Adding a format is one module: the config schema's list and the rule's paths follow the registry."""
    from bioscan_rebuild.export.formats.registry import FORMATS
    from bioscan_rebuild.export.layout import ACCOUNTING, CSV_PATH, MANIFEST, ROOT

    formats = _schema_section("export")["formats"]
    assert formats["items"]["enum"] == list(FORMATS) and formats["default"] == list(FORMATS)
    assert yaml.safe_load((REPO / "config" / "config.yaml").read_text())["export"]["formats"] == list(FORMATS)
    # the files whose loss makes the workflow build the release again (its receipt's check at start-up)
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    for path in (f"{ROOT}/{CSV_PATH}", ACCOUNTING, MANIFEST):
        assert f'"{path}"' in common, path


def test_the_detector_backends_are_the_registrys():
    from bioscan_rebuild.detect.registry import BACKENDS

    assert _schema_section("images")["detector"]["properties"]["backend"]["enum"] == list(BACKENDS)


def test_the_contact_sheet_default_is_the_schemas():
    from bioscan_rebuild.core.params import CONTACT_SHEET_SIZE

    assert _schema_section("images")["contact_sheet_size"]["default"] == CONTACT_SHEET_SIZE


def test_the_image_packages_are_the_schemas():
    from bioscan_rebuild.core.schemas import IMAGE_PACKAGES

    assert _schema_section("export")["image_package"]["enum"] == list(IMAGE_PACKAGES)


def _start_up_backend_parameters(basedir: Path):
    """common.smk's ``_backend_parameters`` (the start-up check's reading of a backend's keywords from its
    source, without importing the package), compiled on its own with ``workflow.basedir`` = ``basedir``."""
    import functools
    import os
    import re
    import types

    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    source = re.search(r"@functools\.cache\ndef _backend_parameters\(.*?(?=\n\n\n)", text, re.S).group(0)
    namespace = {"functools": functools, "os": os, "workflow": types.SimpleNamespace(basedir=str(basedir))}
    exec(source, namespace)
    return namespace["_backend_parameters"]


def test_the_start_up_check_reads_each_backends_keywords_as_python_sees_them():
    import inspect
    import typing

    from bioscan_rebuild.detect.classical import DEFAULTS
    from bioscan_rebuild.detect.registry import BACKENDS

    read = _start_up_backend_parameters(REPO)
    samples = {bool: False, int: 0, float: 0.0}  # what the check stands in for a None default of one such type
    for backend, (module, name) in BACKENDS.items():
        init = getattr(__import__(module, fromlist=[name]), name).__init__
        hints = typing.get_type_hints(init)
        expected = {}
        for parameter in list(inspect.signature(init).parameters.values())[1:]:
            if parameter.kind is parameter.VAR_KEYWORD:
                expected |= DEFAULTS
            elif parameter.default is None or parameter.default is parameter.empty:
                kinds = [k for k in typing.get_args(hints.get(parameter.name)) if k is not type(None)]
                expected[parameter.name] = samples.get(kinds[0]) if len(kinds) == 1 else None
            else:
                expected[parameter.name] = parameter.default
        assert read(backend) == expected, backend


def test_the_start_up_check_reads_the_keywords_of_a_backend_that_inherits_its_constructor(tmp_path):
    detect = tmp_path / "workflow" / "bioscan_rebuild" / "detect"
    detect.mkdir(parents=True)
    (detect / "registry.py").write_text('BACKENDS = {"tuned": ("bioscan_rebuild.detect.tuned", "Tuned")}\n')
    (detect / "tuned.py").write_text(
        "class Base:\n    def __init__(self, bar: float = 75.0, mask: bool | None = None):\n        pass\n\n\n"
        "class Tuned(Base):\n    name = 'tuned'\n"
    )
    assert _start_up_backend_parameters(tmp_path)("tuned") == {"bar": 75.0, "mask": False}
    # several bases: the first (in order) with an __init__, as Python's method order for these; a base imported
    # from elsewhere cannot be read, and says so
    (detect / "registry.py").write_text(
        'BACKENDS = {"mixed": ("bioscan_rebuild.detect.tuned", "Mixed"), '
        '"imported": ("bioscan_rebuild.detect.tuned", "Imported")}\n'
    )
    (detect / "tuned.py").write_text(
        "from elsewhere import Remote\n\n\nclass Mixin:\n    label = 'm'\n\n\n"
        "class Base:\n    def __init__(self, bar: float = 75.0):\n        pass\n\n\n"
        "class Mixed(Mixin, Base):\n    pass\n\n\nclass Imported(Remote, Mixin):\n    pass\n"
    )
    read = _start_up_backend_parameters(tmp_path)
    assert read("mixed") == {"bar": 75.0}
    with pytest.raises(KeyError, match="its base Remote is not defined beside it"):
        read("imported")


# Input functions naming files a person configures (exports, tables, freezes, models, an earlier release): such a
# file is often copied in with its sender's older time (cp -p, rsync -a, unzip), which Snakemake's time trigger
# never sees, so each job reading one also takes its size and time as a parameter (``fingerprint_of``).
CONFIGURED_FILES = (
    "export_of",
    "taxonomy_tables",
    "split_freeze",
    "frozen_table",
    "previous_release",
    "detector_weights",
)
# files whose content, not their size and time, is the parameter (a maintainer's tables: their rows)
BY_CONTENT = {"taxonomy_tables": "rows=taxonomy_table_rows"}


def test_every_job_reading_a_configured_file_reruns_when_it_is_replaced_by_an_older_one():
    """The photo jobs (a model or fusion rule replaced) and the audit (the previous release replaced) kept their
    old results: only the export, tables, freeze and release rules had the fingerprint."""
    import re

    missing = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule )", smk.read_text())[1:]:
            rule = block.split(":", 1)[0].removeprefix("rule ")
            inputs = block.split("input:", 1)[1].split("output:", 1)[0] if "input:" in block else ""
            for function in CONFIGURED_FILES:
                by_content = function in BY_CONTENT and BY_CONTENT[function] in block
                kept = f"fingerprint=fingerprint_of({function})" in block or by_content
                if re.search(rf"=\s*{function}\s*,", inputs) and not kept:
                    missing.append((rule, function))
    assert not missing
    assert "rule process_photos" in (REPO / "workflow" / "rules" / "images.smk").read_text()  # the split finds rules
