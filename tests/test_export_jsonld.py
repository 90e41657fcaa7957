"""JSON-LD export: real RDF offline, SHACL, read-back, determinism, streaming memory."""

from __future__ import annotations

import hashlib
import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from rdflib import RDF, Graph, Literal, Namespace, URIRef
from rdflib.collection import Collection

from bioscan_rebuild.core.schemas import SPLITS
from bioscan_rebuild.export.formats.jsonld import (
    DECIMAL_TERMS,
    DEFAULT_SHAPES,
    INTEGER_TERMS,
    NAMESPACES,
    STRING_TERMS,
    load_graph,
    qualifier,
    read_jsonld_records,
    validate_jsonld,
    write_jsonld,
)

DWC = Namespace(NAMESPACES["dwc"])
BIOSCAN = Namespace(NAMESPACES["bioscan"])
SCHEMA = Namespace(NAMESPACES["schema"])
PROV = Namespace(NAMESPACES["prov"])
SH = Namespace("http://www.w3.org/ns/shacl#")

DATASET = {
    "name": "BIOSCAN-5M rebuild",
    "version": "1.0.0",
    "license": "https://creativecommons.org/licenses/by/3.0/",
    "description": "Test release",
    "software_version": "0.1.0",
    "created": "2024-06-01",
    "id": "https://example.org/bioscan-rebuild/1.0.0",
    "inputs": [{"file": "bold/export.tsv", "sha256": "0" * 64}, {"file": "images.tar", "sha256": "f" * 64}],
}
RANK_COLUMNS = ("phylum", "class", "order", "family", "subfamily", "genus", "species")
PLACEHOLDER = "Coelioxys sp. 0702A115"


def make_records(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    splits = ["train"] * 10 + ["val"] * 6 + ["test"] * 5 + ["pretrain"] * 7 + ["key_unseen"] * 2
    for i in range(n):
        genus, species, family = "Ischnura", "Ischnura élegans", "Coenagrionidae"
        if i % 5 == 1:
            genus, species, family = "Coelioxys", PLACEHOLDER, "Megachilidae"
        elif i % 5 == 2:
            species = None  # genus-level record
        elif i % 5 == 3:
            genus, species = None, None  # family-level record
        barcode = "".join(rng.choice(list("ACGT"), 40)) + ("N" if i % 4 == 0 else "")
        rows.append(
            {
                "processid": f"BIOSCAN{i:04d}-22",
                "sampleid": f"BIOUG{i:05d}-A0{i % 9}" if i % 7 else "",
                "taxon": species or genus or family,
                "phylum": "Arthropoda",
                "class": "Insecta",
                "order": "Odonata" if genus == "Ischnura" or genus is None else "Hymenoptera",
                "family": family,
                "subfamily": "Ischnurinae" if genus == "Ischnura" else None,
                "genus": genus,
                "species": species,
                "dna_bin": f"BOLD:AER{5100 + i}" if i % 6 else None,
                "dna_barcode": barcode if i != 7 else None,
                "country": "Costa Rica" if i % 2 else "Canada",
                "province_state": "Québec" if i % 3 == 0 else "",
                "coord-lat": [19.3786, -33.8688, -0.00001, 20.0, np.nan][i % 5],
                "coord-lon": [-99.1332, 151.2093, -179.9999, 0.5, np.nan][i % 5],
                "image_measurement_value": 1000 + i if i % 4 else None,
                "area_fraction": [0.25, 0.1, np.nan][i % 3],
                "scale_factor": [1.0, 0.3333333333333333, 2.5][i % 3],
                "inferred_ranks": (i * 7) % 128,
                "split": splits[i % len(splits)],
                "index_bioscan_1M_insect": i * 3 if i % 2 else None,
                "chunk": str(i % 3) if i % 4 else "",
                "placeholder_species": species == PLACEHOLDER,
                "image_sha256": hashlib.sha256(f"img{i}".encode()).hexdigest() if i % 8 else None,
                "sha256_original_full": hashlib.sha256(f"full{i}".encode()).hexdigest() if i % 8 else None,
                # given for half of the records, computed by the export for the others
                "barcode_sha256": hashlib.sha256(barcode.encode()).hexdigest() if i % 2 and i != 7 else None,
            }
        )
    df = pd.DataFrame(rows)
    return df.astype(
        {
            "image_measurement_value": "Int64",
            "index_bioscan_1M_insect": "Int64",
            "inferred_ranks": "uint8",
            "placeholder_species": bool,
        }
    )


def split_chunks(df: pd.DataFrame, split: str, size: int = 4):
    part = df[df["split"] == split]
    for start in range(0, len(part), size):
        yield part.iloc[start : start + size]


def missing(value) -> bool:
    return value is None or value is pd.NA or value == "" or (isinstance(value, float) and np.isnan(value))


def expected_record_triples(row: pd.Series) -> int:
    """What the mapping promises: one triple per present column, plus type, isPartOf and derived terms."""
    present = [c for c in (*STRING_TERMS, *DECIMAL_TERMS, *INTEGER_TERMS) if c != "split" and not missing(row[c])]
    n = len(present) + 3  # rdf:type, bioscan:split, schema:isPartOf
    n += any(not missing(row[r]) for r in RANK_COLUMNS)  # taxonRank
    n += missing(row["barcode_sha256"]) and not missing(row["dna_barcode"])  # computed sha256
    if not missing(row["species"]):
        n += 2 if row["placeholder_species"] else 1  # verbatimIdentification + qualifier, or specificEpithet
    return n


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return make_records()


@pytest.fixture(scope="module")
def written(records, tmp_path_factory):
    out = tmp_path_factory.mktemp("jsonld")
    files = {}
    for split in sorted(set(records["split"])):
        path = out / f"{split}.jsonld"
        files[split] = (path, write_jsonld(split_chunks(records, split), path, split=split, dataset=DATASET))
    return files


def test_parses_offline_with_expected_triples(records, written):
    for split, (path, counts) in written.items():
        graph = load_graph(path)
        assert len(graph) == counts["triples"] > 0
        assert counts["records"] == int((records["split"] == split).sum())
        assert counts["bytes"] == path.stat().st_size
        subjects = set(graph.subjects(RDF.type, DWC.Occurrence))
        assert len(subjects) == counts["records"]
        by_id = {str(graph.value(s, DWC.occurrenceID)): s for s in subjects}
        for _, row in records[records["split"] == split].iterrows():
            node = by_id[row["processid"]]
            assert len(list(graph.predicate_objects(node))) == expected_record_triples(row), row["processid"]
    # a record with every column, and the placeholder record, spelt out
    graph = load_graph(written["val"][0])
    full = URIRef(DATASET["id"] + "/records/BIOSCAN0015-22")
    assert len(list(graph.predicate_objects(full))) == 30  # 25 columns + type, split, isPartOf, rank, epithet
    assert graph.value(full, DWC.specificEpithet) == Literal("élegans")
    assert graph.value(full, DWC.taxonRank) == Literal("species")
    assert graph.value(full, DWC.decimalLatitude) == Literal("19.3786", datatype=URIRef(NAMESPACES["xsd"] + "decimal"))
    graph = load_graph(written["train"][0])
    placeholder = URIRef(DATASET["id"] + "/records/BIOSCAN0001-22")
    assert graph.value(placeholder, DWC.verbatimIdentification) == Literal(PLACEHOLDER)
    assert graph.value(placeholder, DWC.identificationQualifier) == Literal("sp.")
    assert graph.value(placeholder, DWC.specificEpithet) is None
    # an interim name is no scientific name: the record names its genus
    genus = records.set_index("processid").loc["BIOSCAN0001-22", "genus"]
    assert graph.value(placeholder, DWC.scientificName) == Literal(genus)
    assert graph.value(placeholder, DWC.taxonRank) == Literal("genus")


def test_dataset_and_provenance_nodes(written):
    graph = load_graph(written["val"][0])
    release = URIRef(DATASET["id"])
    assert graph.value(release, SCHEMA.name) == Literal(DATASET["name"])
    assert graph.value(release, SCHEMA.license) == URIRef(DATASET["license"])
    assert str(graph.value(release, SCHEMA.dateCreated).datatype).endswith("#date")
    activity = graph.value(release, PROV.wasGeneratedBy)
    assert (activity, RDF.type, PROV.Activity) in graph
    agent = graph.value(activity, PROV.wasAssociatedWith)
    assert graph.value(agent, SCHEMA.softwareVersion) == Literal("0.1.0")
    used = {
        str(graph.value(e, SCHEMA.name)): str(graph.value(e, SCHEMA.sha256)) for e in graph.objects(activity, PROV.used)
    }
    assert used == {item["file"]: item["sha256"] for item in DATASET["inputs"]}
    part = graph.value(release, SCHEMA.hasPart)
    assert graph.value(part, BIOSCAN["split"]) == Literal("val")
    assert graph.value(part, BIOSCAN.recordCount).toPython() == written["val"][1]["records"]
    for record in graph.subjects(RDF.type, DWC.Occurrence):
        assert graph.value(record, SCHEMA.isPartOf) == part


def test_shacl_conforms(written):
    for path, counts in written.values():
        conforms, report, triples = validate_jsonld(path)
        assert conforms, report
        assert triples == counts["triples"]


def test_shacl_rejects_broken_record(written, tmp_path):
    document = json.loads(written["train"][0].read_text(encoding="utf-8"))
    record = next(node for node in document["@graph"] if node.get("@type") == "dwc:Occurrence")
    record["decimalLatitude"] = "123"
    record["split"] = "holdout"
    del record["occurrenceID"]
    broken = tmp_path / "broken.jsonld"
    broken.write_text(json.dumps(document), encoding="utf-8")
    conforms, report, triples = validate_jsonld(broken)
    assert not conforms
    assert "decimalLatitude must be one xsd:decimal in [-90, 90]" in report
    assert "split must be exactly one of the 8 BIOSCAN-5M split names" in report
    assert "occurrenceID (processid) is required" in report
    assert report.count("Constraint Violation") == 3
    assert triples == written["train"][1]["triples"] - 1


def test_shacl_rejects_wrong_count_and_unknown_property(written, tmp_path):
    document = json.loads(written["test"][0].read_text(encoding="utf-8"))
    document["@graph"][-1]["recordCount"] += 1
    record = next(node for node in document["@graph"] if node.get("@type") == "dwc:Occurrence")
    record["bioscan:typo"] = "x"  # closed shape: unmapped properties are errors
    broken = tmp_path / "count.jsonld"
    broken.write_text(json.dumps(document), encoding="utf-8")
    conforms, report, _ = validate_jsonld(broken)
    assert not conforms
    assert "differs from the" in report
    assert "typo" in report


def test_shacl_rejects_a_record_retyped(written, tmp_path):
    """A record node given another type (``dwc:Event``) conformed: the shapes target records by type, so the node
    escaped them (its split still counted it), and an RDF reader that asks for occurrences lost the record."""
    document = json.loads(written["train"][0].read_text(encoding="utf-8"))
    record = next(node for node in document["@graph"] if node.get("@type") == "dwc:Occurrence")
    record["@type"] = "dwc:Event"
    broken = tmp_path / "retyped.jsonld"
    broken.write_text(json.dumps(document), encoding="utf-8")
    conforms, report, _ = validate_jsonld(broken)
    assert not conforms and "a record (occurrenceID) must be a dwc:Occurrence" in report


def test_read_back_equals_input(records, written):
    back = pd.concat([read_jsonld_records(path) for path, _ in written.values()], ignore_index=True)
    back = back.sort_values("processid").reset_index(drop=True)
    want = records.sort_values("processid").reset_index(drop=True)
    assert list(back["processid"]) == list(want["processid"])
    for column in STRING_TERMS:
        expected = [None if missing(v) else v for v in want[column]]
        if column == "barcode_sha256":  # computed where absent
            expected = [
                hashlib.sha256(seq.encode()).hexdigest() if not missing(seq) else None for seq in want["dna_barcode"]
            ]
        assert [None if missing(v) else v for v in back[column]] == expected, column
    for column in INTEGER_TERMS:
        assert back[column].astype("Int64").equals(want[column].astype("Int64")), column
    assert list(back["placeholder_species"]) == list(want["placeholder_species"])
    for column in DECIMAL_TERMS:
        for text, value in zip(back[column], want[column]):
            assert missing(text) == missing(value), column
            if not missing(value):
                assert float(text) == value and "e" not in text.lower()
    # decimals come back exactly as written in the file
    lexical = {}
    for path, _ in written.values():
        for node in json.loads(path.read_text(encoding="utf-8"))["@graph"]:
            if "occurrenceID" in node:
                lexical[node["occurrenceID"]] = node
    for _, row in back.iterrows():
        for column, key in DECIMAL_TERMS.items():
            assert lexical[row["processid"]].get(key) == (None if missing(row[column]) else row[column])
    assert set(back["coord-lat"].dropna()) == {"19.3786", "-33.8688", "-0.00001", "20.0"}
    assert set(back["scale_factor"]) == {"1.0", "0.3333333333333333", "2.5"}


def test_deterministic_and_chunking_invariant(records, tmp_path):
    first, second, whole = tmp_path / "a.jsonld", tmp_path / "b.jsonld", tmp_path / "c.jsonld"
    write_jsonld(split_chunks(records, "train"), first, split="train", dataset=DATASET)
    write_jsonld(split_chunks(records, "train"), second, split="train", dataset=DATASET)
    write_jsonld([records[records["split"] == "train"]], whole, split="train", dataset=DATASET)
    assert first.read_bytes() == second.read_bytes() == whole.read_bytes()
    assert not list(tmp_path.glob("*.tmp"))


def test_inline_context_only(written, tmp_path):
    document = json.loads(written["pretrain"][0].read_text(encoding="utf-8"))
    context = document["@context"]
    assert isinstance(context, dict)
    for key, value in context.items():
        assert key != "@import"
        if isinstance(value, dict):
            assert set(value) <= {"@id", "@type"}
        elif value.startswith("http"):  # vocabularies, and the release's own IRIs (rec:, release:)
            assert value in NAMESPACES.values() or value.startswith(DATASET["id"] + "/"), key
    assert not any("@context" in node for node in document["@graph"])
    remote = tmp_path / "remote.jsonld"
    remote.write_text(json.dumps({"@context": "https://schema.org/", "name": "x"}), encoding="utf-8")
    with pytest.raises(ValueError, match="remote JSON-LD contexts"):
        load_graph(remote)


def test_empty_split_and_float32(records, tmp_path):
    counts = write_jsonld(iter(()), tmp_path / "empty.jsonld", split="val_unseen", dataset=DATASET)
    assert counts["records"] == 0
    assert validate_jsonld(tmp_path / "empty.jsonld")[0]
    part = records[records["split"] == "val"].astype({"area_fraction": "float32", "coord-lat": "Float64"})
    write_jsonld([part], tmp_path / "f32.jsonld", split="val", dataset=DATASET)
    back = read_jsonld_records(tmp_path / "f32.jsonld")
    assert set(back["area_fraction"].dropna()) <= {"0.25", "0.1"}  # float32 digits, not 0.10000000149011612


def test_rejects_bad_input(records, tmp_path):
    train = records[records["split"] == "train"]
    with pytest.raises(ValueError, match="unknown split"):
        write_jsonld([train], tmp_path / "x.jsonld", split="holdout", dataset=DATASET)
    with pytest.raises(ValueError, match="include split values"):
        write_jsonld([train], tmp_path / "x.jsonld", split="val", dataset=DATASET)
    with pytest.raises(ValueError, match="unknown dataset keys"):
        write_jsonld([train], tmp_path / "x.jsonld", split="train", dataset={**DATASET, "licence": "x"})
    with pytest.raises(ValueError, match="missing"):
        write_jsonld([train], tmp_path / "x.jsonld", split="train", dataset={"name": "x", "version": "1"})
    no_pid = train.assign(processid=[None] + list(train["processid"][1:]))
    with pytest.raises(ValueError, match="no processid"):
        write_jsonld([no_pid], tmp_path / "x.jsonld", split="train", dataset=DATASET)
    assert not (tmp_path / "x.jsonld").exists() and not list(tmp_path.glob("*.tmp"))


def test_qualifier():
    assert qualifier(PLACEHOLDER) == "sp."
    assert qualifier("Phaonia cf. fuscata") == "cf."
    assert qualifier("Aleiodes aff gastritor") == "aff."
    assert qualifier("Megaselia Malaise4513") == "interim name"


def test_shapes_split_names_match_splits():
    shapes = Graph().parse(DEFAULT_SHAPES, format="turtle")
    lists = [
        [str(item) for item in Collection(shapes, shapes.value(prop, SH["in"]))]
        for prop in shapes.subjects(SH.path, BIOSCAN["split"])
    ]
    assert lists and all(names == list(SPLITS) for names in lists)


def test_streaming_memory_does_not_grow_with_chunks(records, tmp_path):
    template = pd.concat([records[records["split"] == "train"]] * 20, ignore_index=True)  # 200 rows
    columns, dtypes = template.to_dict("list"), template.dtypes.to_dict()

    def chunks(n):
        for k in range(n):  # built lazily, sharing nothing (pandas keeps references between views)
            ids = [f"P{k:05d}-{i:03d}" for i in range(len(template))]
            yield pd.DataFrame({**columns, "processid": ids}).astype(dtypes)

    def peak(n):
        tracemalloc.start()
        try:
            counts = write_jsonld(chunks(n), tmp_path / f"{n}.jsonld", split="train", dataset=DATASET)
            return tracemalloc.get_traced_memory()[1], counts
        finally:
            tracemalloc.stop()

    few, few_counts = peak(5)
    many, many_counts = peak(60)
    assert many_counts["records"] == 12 * few_counts["records"] == 60 * len(template)
    assert many < 1.5 * few + 512 * 1024, (few, many)


def test_an_interim_genus_is_verbatim_and_the_family_is_the_scientific_name(tmp_path):
    record = make_records().iloc[[0]].copy()
    record[["genus", "species", "taxon", "subfamily", "family"]] = ["malaise12", None, "malaise12", None, "Phoridae"]
    record["placeholder_species"] = False
    path = tmp_path / "x.jsonld"
    write_jsonld([record], path, split=record["split"].iloc[0], dataset=DATASET)
    graph = load_graph(path)
    node = next(graph.subjects(RDF.type, DWC.Occurrence))
    assert graph.value(node, DWC.scientificName) == Literal("Phoridae")
    assert graph.value(node, DWC.taxonRank) == Literal("family")
    assert graph.value(node, DWC.verbatimIdentification) == Literal("malaise12")
    assert read_jsonld_records(path).loc[0, "taxon"] == "malaise12"


def test_the_build_graph_names_croissant_json_only_where_the_release_builds_it():
    """A release of `export.formats: [csv, parquet]` shipped a provenance graph whose run was `subjectOf` a
    croissant.json the release did not hold."""
    from bioscan_rebuild.export.provenance import provenance_graph, release_id

    config = {"export": {"name": "BIOSCAN-5M rebuild", "version": "1.0", "formats": ["csv", "parquet"]}}
    run = provenance_graph({"config": config, "jobs": []}, release_id=release_id(config))["@graph"][0]
    assert run["@id"] == "build:run" and "subjectOf" not in run
    config["export"]["formats"].append("croissant")
    run = provenance_graph({"config": config, "jobs": []}, release_id=release_id(config))["@graph"][0]
    assert run["subjectOf"] == "urn:bioscan-rebuild:release:BIOSCAN-5M%20rebuild:1.0/croissant.json"
