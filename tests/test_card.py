"""The dataset card (README.md at the release root): the Hugging Face header and the tables, from the files."""

from __future__ import annotations

import re

import pytest
import yaml

from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.export.card import FIGURES, size_category, write_card


def release_tree(tmp_path, splits=("pretrain", "train", "val")):
    root = tmp_path / "bioscan5m"
    data = root / "metadata" / "parquet" / "data"
    data.mkdir(parents=True)
    for split in splits:
        (data / f"{split}-00000-of-00001.parquet").write_bytes(b"PAR1")
    stats = root / "metadata" / "stats"
    (stats / "figures").mkdir(parents=True)
    (stats / "split_table.csv").write_text(
        "split,records,species,barcodes,bins\npretrain,1200,0,900,300\ntrain,40,12,30,11\ntotal,1240,12,930,311\n"
    )
    (stats / "label_completeness.csv").write_text(
        "rank,categories,labelled,labelled_pct,imbalance_ratio,published_categories,published_labelled_pct\n"
        "order,5,1238,99.84,310.5,55,99.7\nsubfamily,3,400,32.26,2.0,,28.6\n"
    )
    (stats / "stats.json").write_text(
        '{"records": 1240, "genetics": {"method": "mash", "k": 12, "seed": 0, "pairs_per_comparison": 2000,'
        ' "pairs": {"within_species": 2000, "within_bin": 0}},'
        ' "barcode_gap": {"within_bin_p95": 0.0087, "between_bins_p05": 0.12}}'
    )
    (stats / "figures" / "site_map.png").write_bytes(b"png")
    (stats / "figures" / "splits.png").write_bytes(b"png")
    return tmp_path


ACCOUNTING = {
    "inputs": {"records": 1300, "images": 1250},
    "rejected": {"records": 60, "images": 10},
    "released": {"records": 1240, "images": 1240},
    "batches": {"export:a": {}, "images:a": {}, "export:b": {}, "images:b": {}},  # 2 batches, not 4
}


def test_the_card_header_is_a_hub_card_with_a_config_per_table_and_split(tmp_path):
    release = release_tree(tmp_path)
    text = write_card(release, ExportOptions(), ACCOUNTING).read_text()
    header = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", text, re.S).group(1))
    assert header["license"] == "cc-by-3.0" and header["size_categories"] == ["1K<n<10K"]
    assert "image-classification" in header["task_categories"] and "biology" in header["tags"]
    (config,) = header["configs"]  # no images Parquet in this release: no images config
    assert config["config_name"] == "metadata" and config["default"] is True
    assert config["data_files"] == [
        {"split": s, "path": f"bioscan5m/metadata/parquet/data/{s}-*.parquet"} for s in ("pretrain", "train", "val")
    ]


def test_a_release_without_parquet_loads_with_datasets_from_its_csv(tmp_path, monkeypatch):
    """A release of `export.formats: [csv, croissant]` had a card whose `configs:` was empty: `datasets` then read
    every file of the release, croissant.json too, and failed, though the card says it reads the release."""
    from conftest import import_or_skip

    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = import_or_skip("datasets", "datasets (test extra) is not installed")

    csv = tmp_path / "bioscan5m" / "metadata" / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv"
    csv.parent.mkdir(parents=True)
    # pretrain first, as the release writes it: more than the 10,000 rows `datasets` guesses types from, with no
    # genus and no size; then named ones
    pretrain = "".join(f"PT{i},pretrain,,,0,\n" for i in range(10_050))
    # text that pandas' CSV reader, which `datasets` uses, takes for missing by default: legal place names here
    csv.write_text(
        "processid,split,genus,image_measurement_value,inferred_ranks,province_state\n"
        f"{pretrain}P1,train,Megaselia,120,40,nan\nP3,val,Culex,,8,NA\n"
    )
    (tmp_path / "bioscan5m" / "croissant.json").write_text('{"recordSet": [{"field": [{"dataType": ["a"]}]}]}')
    card = write_card(tmp_path, ExportOptions(), ACCOUNTING).read_text()
    header = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", card, re.S).group(1))
    assert header["configs"][0]["data_files"] == [
        {"split": "all_splits", "path": "bioscan5m/metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv"}
    ]
    loaded = datasets.load_dataset(str(tmp_path), cache_dir=str(tmp_path / "cache"))["all_splits"]
    assert loaded.num_rows == 10_052 and loaded["processid"][-2:] == ["P1", "P3"]
    assert loaded["genus"][-2:] == ["Megaselia", "Culex"] and loaded["image_measurement_value"][-2:] == [120.0, None]
    # ... and read as the card tells pandas to read it: "nan" and "NA" were loaded as missing
    assert loaded["province_state"][-2:] == ["nan", "NA"] and loaded["province_state"][0] is None
    assert loaded["inferred_ranks"][-2:] == [40, 8] and loaded.features["inferred_ranks"].dtype == "uint8"


def test_the_card_says_how_many_records_have_no_photo_and_how_to_leave_them_out(tmp_path):
    """A build with `ingest.require_images: false` released records without a photo in the image formats, and the
    card said bioscan-dataset reads the release as the published one: its image loader failed on them."""
    release = release_tree(tmp_path)
    (release / "bioscan5m" / "images" / "cropped_256").mkdir(parents=True)
    accounting = {**ACCOUNTING, "released": {"records": 1240, "images": 1236}}
    text = write_card(release, ExportOptions(), accounting).read_text()
    assert "4 of the records have no photo (built with `ingest.require_images: false`)" in text
    assert "leave out the records whose `image_measurement_value` is empty" in text
    assert "have no photo" not in write_card(release, ExportOptions(), ACCOUNTING).read_text()


def test_the_card_names_only_the_formats_the_release_holds(tmp_path):
    """A release of `export.formats: [csv, parquet]` had a card telling readers to load its croissant.json, JSON-LD
    and HDF5 file, and, with records lacking a photo, naming image folders and an HDF5 file it did not hold."""
    release = release_tree(tmp_path)  # CSV-side files and Parquet only
    accounting = {**ACCOUNTING, "released": {"records": 1240, "images": 1236}}
    text = write_card(release, ExportOptions(), accounting).read_text()
    for absent in ("croissant", "Croissant", "JSON-LD", "HDF5", "image folders"):
        assert absent not in text, absent
    assert "(Gharaee et al., NeurIPS 2024): `bioscan-dataset` and the Hugging Face `datasets` library read" in text
    assert "reads as missing. The Parquet copy holds the same values.\n" in text
    # no image files: no image loader to warn about
    assert "no photo (built with `ingest.require_images: false`): their image columns are empty.\n" in text

    root = release / "bioscan5m"
    for folder in ("metadata/jsonld", "hdf5", "images/cropped_256"):
        (root / folder).mkdir(parents=True)
    (root / "metadata" / "jsonld" / "train.jsonld").write_text("{}")
    (root / "hdf5" / "BIOSCAN_5M.h5").write_bytes(b"\x89HDF")
    (root / "croissant.json").write_text("{}")
    text = write_card(release, ExportOptions(), accounting).read_text()
    assert "library and Croissant (`bioscan5m/croissant.json`) read it as they read the published release." in text
    assert "The Parquet and JSON-LD copies hold the same values; the HDF5 file holds the labels" in text
    assert "its `parquet_metadata` record set holds the stored values." in text
    assert (
        "their image columns are empty, the image folders and the `images` config hold no file for them and the HDF5 "
        "file holds an image of 0 bytes for each. The published release has no such record, so a loader" in text
    )
    (root / "images").rename(root / "no-images")  # HDF5 alone: its verb, and no loader of image files
    text = write_card(release, ExportOptions(), accounting).read_text()
    assert "their image columns are empty and the HDF5 file holds an image of 0 bytes for each.\n" in text


def test_a_release_of_csv_and_images_has_a_metadata_config(tmp_path):
    """`export.formats: [csv, images]`: the card's YAML named the images Parquet alone, so `datasets` could not load
    the metadata table ("BuilderConfig 'metadata' not found"), though the card says it reads the release."""
    root = tmp_path / "bioscan5m"
    csv = root / "metadata" / "csv" / "BIOSCAN_5M_Insect_Dataset_metadata.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("processid,split\nP1,train\n")
    (root / "images_parquet" / "data").mkdir(parents=True)
    (root / "images_parquet" / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    card = write_card(tmp_path, ExportOptions(), ACCOUNTING).read_text()
    header = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", card, re.S).group(1))
    configs = {config["config_name"]: config for config in header["configs"]}
    assert configs["metadata"]["default"] is True and configs["metadata"]["keep_default_na"] is False
    assert configs["metadata"]["data_files"] == [
        {"split": "all_splits", "path": "bioscan5m/metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv"}
    ]
    assert configs["images"]["data_files"] == [
        {"split": "train", "path": "bioscan5m/images_parquet/data/train-*.parquet"}
    ]


def test_the_card_body_holds_the_tables_the_figures_present_and_the_citation(tmp_path):
    release = release_tree(tmp_path)
    text = write_card(release, ExportOptions(), ACCOUNTING, diff_summary={"added": 12}).read_text()
    assert "| pretrain | 1,200 | 0 | 900 | 300 |" in text and "| total | 1,240 | 12 | 930 | 311 |" in text
    assert "| order | 5 | 1,238 | 99.84 | 310.5 | 55 | 99.7 |" in text
    assert "| subfamily | 3 | 400 | 32.26 | 2 | — | 28.6 |" in text  # no published category count: a dash
    links = re.findall(r"!\[(\w+)\]\((\S+)\)", text)
    assert links == [(n, f"bioscan5m/metadata/stats/figures/{n}.png") for n in ("splits", "site_map")]
    assert "| released | 1,240 | 1,240 |" in text and "2 delivery batches" in text
    assert "## Changes since the previous version" in text and "| added | 12 |" in text
    assert "field by field with the reason, is in `bioscan5m/metadata/release_diff.csv`" in text
    assert "@inproceedings{bioscan5m" in text and "Gharaee" in text
    # the pairs each comparison found, not only the configured number (a small release has fewer, or none)
    assert (
        "k = 12, up to 2000 seeded pairs per comparison (seed 0); distinct pairs: within species 2,000, within bin 0"
        in text
    )
    assert "within-BIN pairs lie below 0.0087, 95 % of pairs of BINs of one genus above 0.1200 (random" in text


def test_the_card_names_the_build_files_only_where_the_release_ships_them(tmp_path):
    """A release built by hand (``bioscan-rebuild release`` without ``--provenance-file``/``--config-file``) had a
    card naming both files: its audit then failed it for the missing files the card promised."""
    release = release_tree(tmp_path)
    text = write_card(release, ExportOptions(), ACCOUNTING).read_text()
    assert "provenance.jsonld" not in text and "config.json" not in text
    assert "records_lineage.csv`. `MANIFEST.json` holds every file's size" in text
    (release / "bioscan5m" / "metadata" / "provenance.jsonld").write_text("{}")
    (release / "bioscan5m" / "metadata" / "config.json").write_text("{}")
    text = write_card(release, ExportOptions(), ACCOUNTING).read_text()
    assert (
        "records_lineage.csv`; the build (every job's inputs, parameters and outputs, by sha256) in "
        "`bioscan5m/metadata/provenance.jsonld` (PROV-O); the resolved configuration in "
        "`bioscan5m/metadata/config.json`. `MANIFEST.json`" in text.replace("\n", " ")
    )


def test_an_unknown_licence_is_other_with_its_link(tmp_path):
    release = release_tree(tmp_path)
    options = ExportOptions(licence="https://example.org/licence")
    header = yaml.safe_load(write_card(release, options, ACCOUNTING).read_text().split("---\n")[1])
    assert header["license"] == "other" and header["license_link"] == "https://example.org/licence"


def test_a_name_beyond_the_bmp_reads_back_from_the_card_header(tmp_path):
    """`pretty_name` was JSON's ASCII: an emoji became a surrogate pair, which YAML reads as two lone surrogates
    (the Hub's card reader then fails to encode it)."""
    release = release_tree(tmp_path)
    name = 'BIOSCAN 🦋 rebuild, "Québec" \\ 𝔘'
    options = ExportOptions(name=name, licence="https://example.org/licence/🦋")
    header = yaml.safe_load(write_card(release, options, ACCOUNTING).read_text().split("---\n")[1])
    assert header["pretty_name"] == name and header["license_link"] == "https://example.org/licence/🦋"
    header["pretty_name"].encode("utf-8")


@pytest.mark.parametrize(
    ("iri", "hf"),
    [
        ("https://creativecommons.org/licenses/by/4.0", "cc-by-4.0"),  # the config's pattern takes these spellings
        ("http://creativecommons.org/licenses/by/4.0/", "cc-by-4.0"),
        ("https://creativecommons.org/licenses/by/3.0/legalcode", "cc-by-3.0"),
        ("https://www.creativecommons.org/licenses/by-nc/4.0/deed.en", "cc-by-nc-4.0"),
        ("https://creativecommons.org/licenses/by-nc-sa/4.0/", "cc-by-nc-sa-4.0"),
    ],
)
def test_a_known_licence_is_its_hugging_face_id_however_its_iri_is_spelt(tmp_path, iri, hf):
    """CC BY 4.0 without its trailing slash was "other" with a link: the Hub did not show the licence."""
    release = release_tree(tmp_path)
    header = yaml.safe_load(write_card(release, ExportOptions(licence=iri), ACCOUNTING).read_text().split("---\n")[1])
    assert header["license"] == hf and "license_link" not in header


@pytest.mark.parametrize(
    ("n", "bucket"),
    [
        (0, "n<1K"),
        (999, "n<1K"),
        (1000, "1K<n<10K"),
        (5_150_850, "1M<n<10M"),
        (10**7, "10M<n<100M"),
        (2 * 10**9, "1B<n<10B"),
        (10**12 - 1, "100B<n<1T"),
        (10**12, "n>1T"),
    ],
)
def test_size_categories(n, bucket):
    assert size_category(n) == bucket


def test_every_figure_the_report_shows_is_described_in_the_card():
    from conftest import REPO

    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    listed = re.search(r"STATS_FIGURES = \{.*?\n\}", common, re.S).group(0)
    assert sorted(re.findall(r'^    "(\w+)":', listed, re.M)) == sorted(FIGURES)
    for name in FIGURES:
        assert (REPO / "workflow" / "report" / "stats" / f"{name}.rst").is_file()


def test_the_stats_rule_declares_every_table_the_stage_writes():
    from bioscan_rebuild.stats.compute import TABLES
    from conftest import REPO

    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    listed = re.search(r"STATS_TABLES = \[.*?\n\]", common, re.S).group(0)
    assert re.findall(r'^    "(\w+)",', listed, re.M) == list(TABLES)


def test_the_card_says_how_to_read_the_csv_files(tmp_path):
    """pandas' defaults read a sample id or a province spelt "NA" as missing; the card's own call keeps them, and
    reads an empty field as missing."""
    import io

    import pandas as pd

    release = release_tree(tmp_path)
    text = write_card(release, ExportOptions(), ACCOUNTING).read_text()
    call = re.search(r"`pandas\.read_csv\(path, (.*?)\)`", text).group(1)
    options = eval(f"dict({call})")  # the card's keywords, as a reader copies them
    released = 'processid,sampleid,province_state\nA-1,NA,null\nA-2,,"Quebec"\n'
    frame = pd.read_csv(io.StringIO(released), **options)
    assert frame["sampleid"].tolist()[0] == "NA" and frame["province_state"].tolist()[0] == "null"
    assert pd.isna(frame["sampleid"].tolist()[1]) and frame["province_state"].tolist()[1] == "Quebec"
    assert pd.isna(pd.read_csv(io.StringIO(released))["sampleid"][0])  # what the defaults did


def test_the_card_names_the_markers_the_build_kept_and_the_split_protocol_as_published(tmp_path):
    """The card called every barcode COI-5P where ``ingest.markers`` kept 18S rows too, and said described species
    went to the unseen splits (placeholder species of described species' genera do: splits.md, step 1)."""
    release = release_tree(tmp_path)
    config = release / "bioscan5m" / "metadata" / "config.json"

    def card() -> str:
        return " ".join(write_card(release, ExportOptions(), ACCOUNTING).read_text().split())

    assert "each with a DNA barcode, a BOLD" in card()  # no config shipped: no marker claimed
    config.write_text('{"ingest": {"markers": ["COI-5P"]}}')
    assert "each with a DNA barcode (COI-5P), a BOLD" in card()
    config.write_text('{"ingest": {"markers": ["18S", "COI-5P"]}}')
    text = card()
    assert "each with a DNA barcode (of the markers 18S, COI-5P, as `ingest.markers` lists them" in text
    assert "described species are split into the seen sets (`train`, `val`, `test`)" in text
    assert "at least 8 such records, else to `other_heldout`" in text
    assert "described species are split into seen (`train`, `val`, `test`) and unseen" not in text
    # frozen records whose species a later version drops keep their split: the card said only the other way round
    # (a pretrain record gaining a label), while a v2 val split counted no species (reviewer stats)
    assert "whose species a later version drops keeps its split without one" in text
