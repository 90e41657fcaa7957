"""``release_diff``: what changed between two versions, and why, field by field."""

from __future__ import annotations

import hashlib

import pandas as pd
import pyarrow as pa
import pytest

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.schemas import RELEASE_COLUMNS
from bioscan_rebuild.export.diff import release_diff


def _release(rows: list[dict]) -> pa.Table:
    return pa.table({c: pa.array([row.get(c) for row in rows], pa.string()) for c in RELEASE_COLUMNS})


def _write_csv(table: pa.Table, path) -> None:
    table.to_pandas().to_csv(path, index=False)


def test_a_derived_taxon_and_inferred_ranks_change_names_the_rule_that_changed_their_rank(tmp_path):
    """A correction of the species changes the derived taxon (and the inferred-rank bits): the taxon row used to
    say only 'its source row, photo or an earlier stage changed' although the changes log names the rule."""
    base = {"processid": "P1", "order": "Diptera", "family": "Phoridae", "genus": "Megaselia", "split": "train"}
    old = _release([{**base, "species": "Megaselia sp. 1", "taxon": "Megaselia sp. 1", "inferred_ranks": "32"}])
    new = _release([{**base, "species": "Megaselia rufipes", "taxon": "Megaselia rufipes", "inferred_ranks": "0"}])
    _write_csv(old, tmp_path / "old.csv")
    change = {"processid": "P1", "field": "species", "old": "Megaselia sp. 1", "new": "Megaselia rufipes"}
    changes = pd.DataFrame([{**change, "rule": "correction"}])
    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    table, summary = release_diff(tmp_path / "old.csv", new, rejects, changes)
    why = {row["field"]: row["why"] for row in table.to_pylist()}
    assert why == {"species": "correction", "taxon": "correction", "inferred_ranks": "correction"}
    assert summary["changed_records"] == 1 and summary["changed_fields"] == 3


def test_text_that_a_csv_reader_takes_for_missing_is_no_change(tmp_path):
    """`NA`, `N/A`, `null`, `nan` are values a record may hold (ingest blanks only its configured tokens): the
    previous release's CSV read them back as missing, and an unchanged release listed them all as changed."""
    rows = [
        {"processid": "P1", "sampleid": "NA", "province_state": "N/A", "subfamily": "null", "split": "train"},
        {"processid": "P2", "sampleid": "nan", "country": "NULL", "genus": "1.#IND", "split": "val"},
    ]
    release = _release(rows)
    _write_csv(release, tmp_path / "old.csv")
    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    changes = pd.DataFrame(columns=["processid", "field", "rule"])
    table, summary = release_diff(tmp_path / "old.csv", release, rejects, changes)
    assert table.num_rows == 0 and summary["changed_records"] == 0 and summary["changed_fields"] == 0


def test_a_release_must_claim_a_newer_version_than_the_one_it_follows(tmp_path):
    """Two releases used to be able to claim one version (and one JSON-LD IRI), or an older one."""
    import json

    import pytest

    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.export.diff import previous_version
    from bioscan_rebuild.export.release import check_newer_version

    previous = tmp_path / "v"
    (previous / "bioscan5m" / "metadata").mkdir(parents=True)
    (previous / "bioscan5m" / "metadata" / "config.json").write_text(json.dumps({"export": {"version": "0.9.0"}}))
    assert previous_version(previous) == "0.9.0"
    check_newer_version(previous, "0.10.0")  # numbers, not text: 0.10 follows 0.9
    for version in ("0.9.0", "0.8.1"):
        with pytest.raises(InputError, match=f"export.version {version} is not newer than 0.9.0"):
            check_newer_version(previous, version)
    check_newer_version(tmp_path / "none", "0.1.0")  # a release that does not say its version: nothing to compare


def test_a_changed_released_image_is_a_diff_row_saying_why(tmp_path):
    """Only the 23 columns were compared: a release whose images all changed (another JPEG quality, detector or a
    corrected box) had an empty diff."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from bioscan_rebuild.export.diff import IMAGE_COLUMNS, image_diff

    def table(rows):
        return pa.table({name: [row.get(name) for row in rows] for name in ("processid", *IMAGE_COLUMNS)}, schema=None)

    same = {"image_sha256": "p1", "params_key": "k1", "sha256_original_full": "o1", "sha256_original_256": "s1"}
    old = [
        {"processid": "A", **same, "sha256_cropped": "c1", "sha256_cropped_256": "d1"},
        {"processid": "B", **same, "sha256_cropped": "c2", "sha256_cropped_256": "d2"},
        {"processid": "C", **same, "sha256_cropped": "c3", "sha256_cropped_256": "d3"},
        {"processid": "D", **same, "sha256_cropped": None, "sha256_cropped_256": None},  # an empty well
        {"processid": "gone", **same, "sha256_cropped": "x", "sha256_cropped_256": "y"},
    ]
    new = [
        {"processid": "A", **same, "sha256_cropped": "c1", "sha256_cropped_256": "d1"},  # unchanged
        {"processid": "B", **same, "params_key": "k2", "sha256_cropped": "c9", "sha256_cropped_256": "d9"},
        {**old[2], "image_sha256": "p2", "sha256_original_full": "o2"},  # a new photo, the same crops
        {"processid": "D", **same, "sha256_cropped": "c4", "sha256_cropped_256": "d4"},  # now boxed, same key
        {"processid": "new", **same, "sha256_cropped": "z", "sha256_cropped_256": "z"},
    ]
    lineage = tmp_path / "records_lineage.csv"
    pacsv.write_csv(table(old), lineage)
    rows = [tuple(row.values()) for row in image_diff(lineage, table(new)).to_pylist()]
    assert rows == [
        (
            "B",
            "changed",
            "image:cropped",
            "c2",
            "c9",
            "made with other image parameters, detector or a corrected box (store key changed)",
        ),
        (
            "B",
            "changed",
            "image:cropped_256",
            "d2",
            "d9",
            "made with other image parameters, detector or a corrected box (store key changed)",
        ),
        ("C", "changed", "image:original_full", "o1", "o2", "its source photo changed"),
        (
            "D",
            "changed",
            "image:cropped",
            None,
            "c4",
            "made again with the same parameters (a library or the image stage changed)",
        ),
        (
            "D",
            "changed",
            "image:cropped_256",
            None,
            "d4",
            "made again with the same parameters (a library or the image stage changed)",
        ),
    ]
    assert image_diff(tmp_path / "none.csv", table(new)).num_rows == 0  # a previous release without a lineage


def test_a_size_field_changed_with_its_images_says_why_they_were_made_again():
    """A maintainer's box changed a record's area_fraction and scale_factor, and the diff said "its source row,
    photo or an earlier stage changed" (neither had changed): a size field changed with the record's images now
    gives their reason. Other fields, and records whose images did not change, keep theirs."""
    import pyarrow as pa

    from bioscan_rebuild.export.diff import DIFF_SCHEMA, UNEXPLAINED, _explained_by_images

    remade = "made with other image parameters, detector or a corrected box (store key changed)"
    table = pa.Table.from_pylist(
        [
            {
                "processid": "B",
                "change": "changed",
                "field": "area_fraction",
                "old": "0.0046",
                "new": "0.0763",
                "why": UNEXPLAINED,
            },
            {
                "processid": "B",
                "change": "changed",
                "field": "country",
                "old": "Canada",
                "new": "Peru",
                "why": UNEXPLAINED,
            },
            {
                "processid": "A",
                "change": "changed",
                "field": "scale_factor",
                "old": "0.1",
                "new": "0.2",
                "why": UNEXPLAINED,
            },
            {
                "processid": "C",
                "change": "changed",
                "field": "scale_factor",
                "old": "0.1",
                "new": "0.2",
                "why": UNEXPLAINED,
            },
            {
                "processid": "D",
                "change": "changed",
                "field": "image_measurement_value",
                "old": "5",
                "new": "9",
                "why": "a rule",
            },
        ],
        schema=DIFF_SCHEMA,
    )
    images = pa.Table.from_pylist(
        [
            {"processid": "B", "change": "changed", "field": "image:cropped", "old": "c1", "new": "c2", "why": remade},
            {
                "processid": "C",
                "change": "changed",
                "field": "image:cropped",
                "old": "c1",
                "new": "c2",
                "why": "its source photo changed",
            },
            {"processid": "D", "change": "changed", "field": "image:cropped", "old": "c1", "new": "c2", "why": remade},
        ],
        schema=DIFF_SCHEMA,
    )
    assert _explained_by_images(table, images)["why"].to_pylist() == [
        f"its images were {remade}",
        UNEXPLAINED,
        UNEXPLAINED,
        "its source photo changed",
        "a rule",
    ]


def test_a_withdrawn_correction_and_exclusion_are_named_as_such(tmp_path):
    """The previous release applied a correction and an exclusion; this build's table has neither. The reverted
    field said 'its source row, photo or an earlier stage changed' and the re-admitted record 'new in this build',
    though neither its source nor its photo changed."""
    base = {"order": "Diptera", "family": "Phoridae", "split": "train"}
    old = _release([{**base, "processid": "P1", "country": "Canada"}])
    new = _release([{**base, "processid": "P1", "country": "Canda"}, {**base, "processid": "P2"}])
    _write_csv(old, tmp_path / "old.csv")
    before_changes = pd.DataFrame([{"processid": "P1", "field": "country", "rule": "correction"}])
    before_rejects = pd.DataFrame([{"kind": "record", "processid": "P2", "reason": "excluded"}])
    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    changes = pd.DataFrame(columns=["processid", "field", "rule"])
    table, _ = release_diff(tmp_path / "old.csv", new, rejects, changes, before_rejects, before_changes)
    why = {(row["processid"], row["field"]): row["why"] for row in table.to_pylist()}
    assert why == {
        ("P2", "split"): "the previous release left it out (excluded); this build does not",
        ("P1", "country"): "the previous release's correction no longer applies",
    }


def test_a_record_back_from_a_withdrawn_delivery_is_named_as_such(tmp_path):
    """v3 released P2, v4 withdrew its delivery (no reject: no input held it), v5 has it again: the diff said "new
    in this build" (reviewer maint). The previous release's split history knows it."""
    base = {"order": "Diptera", "family": "Phoridae", "split": "train"}
    old = _release([{**base, "processid": "P1"}])
    new = _release([{**base, "processid": "P1"}, {**base, "processid": "p2"}, {**base, "processid": "P3"}])
    _write_csv(old, tmp_path / "old.csv")
    history = pd.DataFrame(
        [
            {"processid": "P1", "split": "train", "last_version": "0.4.0"},
            {"processid": "P2", "split": "train", "last_version": "0.3.0"},
        ]
    )
    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    changes = pd.DataFrame(columns=["processid", "field", "rule"])
    table, _ = release_diff(tmp_path / "old.csv", new, rejects, changes, None, None, history)
    why = {row["processid"]: row["why"] for row in table.to_pylist()}
    assert why == {
        "p2": "released in 0.3.0 (train), left out of the previous release; back in this build",  # case aside
        "P3": "new in this build",
    }


def test_a_record_spelled_otherwise_by_a_later_delivery_is_the_same_record(tmp_path):
    """BSCN1-21 redelivered as bscn1-21 with a new country: the diff said one record added and one removed
    (`superseded`), and not the country that changed; its images were not compared at all."""
    import pyarrow.csv as pacsv

    from bioscan_rebuild.export.diff import IMAGE_COLUMNS, image_diff

    base = {"processid": "BSCN1-21", "country": "Costa Rica", "split": "train"}
    _write_csv(_release([base, {"processid": "P2", "split": "val"}]), tmp_path / "old.csv")
    new = _release([{**base, "processid": "bscn1-21", "country": "Peru"}, {"processid": "P2", "split": "val"}])
    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    changes = pd.DataFrame([{"processid": "bscn1-21", "field": "country", "rule": "superseded"}])
    table, summary = release_diff(tmp_path / "old.csv", new, rejects, changes)
    assert [(r["processid"], r["change"], r["field"], r["old"], r["new"], r["why"]) for r in table.to_pylist()] == [
        (
            "bscn1-21",
            "changed",
            "processid",
            "BSCN1-21",
            "bscn1-21",
            "spelled otherwise (case or invisible characters) by its source",
        ),
        ("bscn1-21", "changed", "country", "Costa Rica", "Peru", "superseded"),
    ]
    assert (summary["added"], summary["removed"], summary["changed_records"]) == (0, 0, 1)
    hashes = dict.fromkeys(IMAGE_COLUMNS, "h")
    pacsv.write_csv(pa.table({"processid": ["BSCN1-21"], **{k: [v] for k, v in hashes.items()}}), tmp_path / "l.csv")
    images = pa.table({"processid": ["bscn1-21"], **{k: [v] for k, v in hashes.items()}, "sha256_cropped": ["k"]})
    assert [(r["processid"], r["field"]) for r in image_diff(tmp_path / "l.csv", images).to_pylist()] == [
        ("bscn1-21", "image:cropped")
    ]


def test_the_image_diff_joins_records_by_the_key_the_record_diff_uses(tmp_path):
    """The image diff had its own key in Arrow, whose upper case differs from Python's (``ß`` stays ``ẞ``, not
    ``SS``; a ligature stays): a record the record diff matched across a respelling lost its image comparison."""
    import pyarrow.csv as pacsv

    from bioscan_rebuild.core.schemas import processid_keys
    from bioscan_rebuild.export.diff import IMAGE_COLUMNS, image_diff

    old_ids, new_ids = ["Straße-1", "\ufb01x-2"], ["STRASSE-1", "FIX-2"]
    assert list(processid_keys(old_ids)) == list(processid_keys(new_ids))  # one record each, for the record diff
    hashes = dict.fromkeys(IMAGE_COLUMNS, "h")
    pacsv.write_csv(pa.table({"processid": old_ids, **{k: [v, v] for k, v in hashes.items()}}), tmp_path / "l.csv")
    images = pa.table({"processid": new_ids, **{k: [v, v] for k, v in hashes.items()}, "sha256_cropped": ["k", "k"]})
    assert [(r["processid"], r["field"]) for r in image_diff(tmp_path / "l.csv", images).to_pylist()] == [
        ("FIX-2", "image:cropped"),
        ("STRASSE-1", "image:cropped"),
    ]


def test_a_previous_release_holding_one_record_under_two_spellings(tmp_path):
    """A release from before spellings were merged held BSCN1-22 and bscn1-22: matched by key, the diff crashed."""
    _write_csv(_release([{"processid": p, "split": "train"} for p in ("BSCN1-22", "bscn1-22", "P2")]), tmp_path / "o")
    new = _release([{"processid": p, "split": "train"} for p in ("BSCN1-22", "P2")])
    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    changes = pd.DataFrame(columns=["processid", "field", "rule"])
    table, summary = release_diff(tmp_path / "o", new, rejects, changes)
    assert [(r["processid"], r["change"], r["why"]) for r in table.to_pylist()] == [
        ("bscn1-22", "removed", "another spelling of a record the previous release held")
    ]
    assert (summary["removed"], summary["added"]) == (1, 0)
    # the counts add up: previous - removed + added = records (it counted the previous records once merged)
    assert summary["previous_records"] - summary["removed"] + summary["added"] == summary["records"] == 2


def test_the_image_diff_of_a_record_held_under_two_spellings_compares_its_first(tmp_path):
    """Joined to both old spellings, the record's image changed twice, against each, in the join's order."""
    import pyarrow.csv as pacsv

    from bioscan_rebuild.export.diff import IMAGE_COLUMNS, image_diff

    old = {k: ["h", "h"] for k in IMAGE_COLUMNS} | {"sha256_cropped": ["x1", "x2"]}
    pacsv.write_csv(pa.table({"processid": ["AB-1", "ab-1"], **old}), tmp_path / "l.csv")
    images = pa.table({"processid": ["AB-1"], **{k: ["h"] for k in IMAGE_COLUMNS}, "sha256_cropped": ["c"]})
    rows = image_diff(tmp_path / "l.csv", images).to_pylist()
    assert [(r["processid"], r["field"], r["old"], r["new"]) for r in rows] == [("AB-1", "image:cropped", "x1", "c")]


def _published(folder, rows: list[dict]):
    """A minimal published release: its CSV and a MANIFEST.json listing it."""
    import json

    from bioscan_rebuild.core.io import file_sha256
    from bioscan_rebuild.export.diff import CSV_PATH, ROOT

    csv = folder / ROOT / CSV_PATH
    csv.parent.mkdir(parents=True)
    _write_csv(_release(rows), csv)
    rel = csv.relative_to(folder).as_posix()
    entry = {"bytes": csv.stat().st_size, "sha256": file_sha256(csv)}
    (folder / "MANIFEST.json").write_text(json.dumps({"files": {rel: entry}}))
    return csv


def _relist(folder) -> None:
    """The MANIFEST.json of every file in ``folder``, as the release writes it."""
    import json

    from bioscan_rebuild.core.io import file_sha256

    files = {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "MANIFEST.json"
    }
    (folder / "MANIFEST.json").write_text(json.dumps({"files": files}))


def test_the_diff_reads_a_previous_release_only_as_its_manifest_lists_it(tmp_path):
    """An edited previous release gave a diff it never held (`Tampered` -> the real taxon) while the summary named
    the untouched release's manifest; and the release's bytes carried the previous folder's name, so a copy of the
    same release under another name gave another release."""
    import json
    import shutil

    import pytest

    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.export.diff import write_release_diff

    rows = [{"processid": "P1", "taxon": "Aus", "split": "train"}, {"processid": "P2", "taxon": "Bus", "split": "val"}]
    csv = _published(tmp_path / "v1", rows)
    shutil.copytree(tmp_path / "v1", tmp_path / "published_1.0")
    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    changes = pd.DataFrame(columns=["processid", "field", "rule"])
    new = _release(rows)
    # a copy whose files are links (a hub snapshot, git-annex) is the same release
    for path in sorted((tmp_path / "v1").rglob("*")):
        linked = tmp_path / "linked" / path.relative_to(tmp_path / "v1")
        linked.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            linked.symlink_to(path)
    names = ("v1", "published_1.0", "linked")
    for previous in names:
        write_release_diff(tmp_path / previous, new, rejects, changes, tmp_path / f"diff-{previous}")
    summaries = [(tmp_path / f"diff-{p}" / "release_diff_summary.json").read_bytes() for p in names]
    assert len(set(summaries)) == 1 and "previous_manifest_sha256" in json.loads(summaries[0])
    csv.write_text(csv.read_text().replace("Aus", "Tampered"))
    with pytest.raises(InputError, match=r"not the file .*MANIFEST.json lists .*changed after it was built"):
        write_release_diff(tmp_path / "v1", new, rejects, changes, tmp_path / "diff-again")
    # a file the manifest lists, deleted since: read as "none", it emptied that part of the diff in silence
    csv.unlink()
    with pytest.raises(InputError, match=r"MANIFEST.json lists it, but it is missing"):
        write_release_diff(tmp_path / "v1", new, rejects, changes, tmp_path / "diff-deleted")


def test_a_frozen_split_reads_the_previous_release_only_as_its_manifest_lists_it(tmp_path):
    """The splits froze from an edited previous release's CSV as readily as from the published one."""
    import pytest

    from bioscan_rebuild.cli.main import build_parser
    from bioscan_rebuild.core.errors import InputError

    rows = [{"processid": f"P{i}", "genus": "Aus", "species": "Aus bus", "split": "train"} for i in range(3)]
    csv = _published(tmp_path / "v1", rows)
    (tmp_path / "in.csv").write_text(
        "processid,genus,species,dna_barcode\n" + "".join(f"P{i},Aus,Aus bus,ACG{'ACGT'[i]}\n" for i in range(3))
    )
    command = ["split", str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), "--freeze", str(csv)]
    command += ["--freeze-manifest", str(tmp_path / "v1" / "MANIFEST.json")]
    args = build_parser().parse_args(command)
    assert args.func(args) == 0
    csv.write_text(csv.read_text().replace("train", "test", 1))
    with pytest.raises(InputError, match="changed after it was built"):
        args.func(args)


@pytest.mark.parametrize("manifest", ['{"files": ["splits.csv"]}', '{"files": {"splits.csv": "abc"}}'])
def test_a_manifest_of_another_shape_is_one_line(tmp_path, manifest):
    """A MANIFEST.json whose files are a list, or whose entry is no object, ended in an AttributeError traceback."""
    from bioscan_rebuild.core.errors import InputError
    from bioscan_rebuild.core.io import check_listed

    (tmp_path / "MANIFEST.json").write_text(manifest)
    (tmp_path / "splits.csv").write_text("processid,split\n")
    with pytest.raises(InputError, match="not a release manifest"):
        check_listed(tmp_path / "MANIFEST.json", tmp_path / "splits.csv")


def test_a_removed_record_is_explained_by_what_removed_it_not_by_what_the_last_release_rejected_too(tmp_path):
    """BSCN1174-23 left for a short barcode; its 18S row, rejected in every release, made the reason read
    "short_barcode;unsupported_marker". (The previous release's rejects are read from its CSV: text.)"""
    old_rows = [{"processid": "B-1", "split": "train"}, {"processid": "B-2", "split": "val"}]
    new = _release([{"processid": "B-2", "split": "val"}])
    line16 = {
        "kind": "record",
        "processid": "B-1",
        "reason": "unsupported_marker",
        "batch": "a",
        "source_file": "e.tsv",
    }
    before = pd.DataFrame([{**line16, "source_line": "16"}, {**line16, "processid": None, "source_line": "3"}])
    now = pd.DataFrame(
        [
            {**line16, "source_line": 16},
            {**line16, "processid": None, "source_line": 3},
            {**line16, "reason": "short_barcode", "source_line": 15},
            {**line16, "processid": "B-2", "reason": "duplicate_record", "source_line": 20},
        ]
    )
    changes = pd.DataFrame(columns=["processid", "field", "rule"])
    _write_csv(_release(old_rows), tmp_path / "old.csv")
    table, _ = release_diff(tmp_path / "old.csv", new, now, changes, before)
    assert [(r["processid"], r["change"], r["why"]) for r in table.to_pylist()] == [("B-1", "removed", "short_barcode")]


def test_a_record_left_out_of_one_version_returns_to_its_split(tmp_path):
    """A record missing from v2 (a late photo) was not frozen in v3: it was drawn again, a val or test record
    possibly into train. The split history carries every record any version released."""
    import json

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from bioscan_rebuild.core.io import file_sha256
    from bioscan_rebuild.export.layout import CSV_PATH, ROOT, SPLIT_HISTORY
    from bioscan_rebuild.export.side_files import split_history
    from bioscan_rebuild.splits.stage import split_csv

    def release(folder, version, table):  # a published release: its history, config and manifest
        history = folder / ROOT / SPLIT_HISTORY.path
        history.parent.mkdir(parents=True)
        pacsv.write_csv(table, history)
        config = folder / ROOT / "metadata" / "config.json"
        config.write_text(json.dumps({"export": {"version": version}}))
        files = {
            p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
            for p in (history, config)
        }
        (folder / "MANIFEST.json").write_text(json.dumps({"files": files}))

    def splits(rows):
        path = tmp_path / f"splits-{len(rows)}-{rows[0][0]}.parquet"
        pq.write_table(pa.table({"processid": [r[0] for r in rows], "split": [r[1] for r in rows]}), path)
        return path

    v1 = split_history(splits([("P2", "test"), ("P1", "train")]), "1.0")
    assert v1.to_pylist() == [
        {"processid": "P1", "split": "train", "last_version": "1.0", "barcode_key": None, "held_barcode_keys": None},
        {"processid": "P2", "split": "test", "last_version": "1.0", "barcode_key": None, "held_barcode_keys": None},
    ]  # a split table without barcode keys (as these): none
    release(tmp_path / "v1", "1.0", v1)
    v2 = split_history(splits([("P1", "train")]), "2.0", tmp_path / "v1")  # P2's photo came late
    assert v2.to_pylist() == [
        {"processid": "P1", "split": "train", "last_version": "2.0", "barcode_key": None, "held_barcode_keys": None},
        {"processid": "P2", "split": "test", "last_version": "1.0", "barcode_key": None, "held_barcode_keys": None},
    ]
    release(tmp_path / "v2", "2.0", v2)
    # v3 freezes from v2's history: P2 is back in test, whatever the protocol would draw for it now
    rows = [f"P{i},Aus,Aus bus,{'ACGT'[i % 4] * 3}{i}" for i in range(1, 13)]
    (tmp_path / "in.csv").write_text("processid,genus,species,dna_barcode\n" + "\n".join(rows) + "\n")
    split_csv(tmp_path / "in.csv", tmp_path / "v3.csv", freeze_csv=tmp_path / "v2" / ROOT / SPLIT_HISTORY.path)
    v3 = pd.read_csv(tmp_path / "v3.csv", dtype=str).set_index("processid")["split"]
    assert (v3["P1"], v3["P2"]) == ("train", "test")
    # a release from before there was a history: its CSV's records, with its version
    old = tmp_path / "old"
    csv = old / ROOT / CSV_PATH
    csv.parent.mkdir(parents=True)
    _write_csv(_release([{"processid": "Q1", "split": "val", "dna_barcode": "NNACGTN"}]), csv)
    (old / ROOT / "metadata" / "config.json").write_text(json.dumps({"export": {"version": "0.9"}}))
    carried = split_history(splits([("P1", "train")]), "1.0", old).to_pylist()
    key = hashlib.md5(b"ACGT").hexdigest()  # its barcode's key from the CSV's dna_barcode, end Ns stripped
    assert carried[1] == {
        "processid": "Q1",
        "split": "val",
        "last_version": "0.9",
        "barcode_key": key,
        "held_barcode_keys": None,
    }


def test_a_history_frozen_through_splits_freeze_keeps_the_records_this_version_leaves_out(tmp_path):
    """README gives ``splits.freeze`` (a previous release's split history) as the way to freeze without
    ``release.previous``; the new history then held only this version's records: a val record left out of v2 was
    drawn again in v3, into train, and a record whose barcode changed held its old key no more (reviewer
    upgrade). The table frozen from is carried as a previous release's history is."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from bioscan_rebuild.export.side_files import split_history

    old_key, new_key, gone_key = (hashlib.md5(s.encode()).hexdigest() for s in ("ACGT", "TTTT", "GGGG"))
    v1 = pa.table(
        {
            "processid": ["P1", "P2", "P3"],
            "split": ["train", "val", "test"],
            "last_version": ["1.0"] * 3,
            "barcode_key": [None, gone_key, old_key],
            "held_barcode_keys": [None] * 3,
        }
    )
    frozen = tmp_path / "v1_split_history.csv"
    pacsv.write_csv(v1, frozen)
    splits = tmp_path / "splits.parquet"
    pq.write_table(
        pa.table({"processid": ["P1", "P3"], "split": ["train", "test"], "barcode_key": [None, new_key]}), splits
    )
    assert split_history(splits, "2.0", frozen=frozen).to_pylist() == [
        {"processid": "P1", "split": "train", "last_version": "2.0", "barcode_key": None, "held_barcode_keys": None},
        {"processid": "P2", "split": "val", "last_version": "1.0", "barcode_key": gone_key, "held_barcode_keys": None},
        {
            "processid": "P3",
            "split": "test",
            "last_version": "2.0",
            "barcode_key": new_key,
            "held_barcode_keys": old_key,
        },
    ]
    # a hand-made freeze of processid, split and dna_barcode: the version is unknown, the key made from the barcode
    (tmp_path / "freeze.csv").write_text("processid,split,dna_barcode\nP2,val,GGGG\n")
    carried = split_history(splits, "2.0", frozen=tmp_path / "freeze.csv").to_pylist()
    assert carried[1] == {
        "processid": "P2",
        "split": "val",
        "last_version": None,
        "barcode_key": gone_key,
        "held_barcode_keys": None,
    }
    # read as the split stage reads a freeze (reviewer diffg: the release job failed on a zipped one the split
    # stage took, wrote "NA" as a held key and crashed on a blank processid): compressed, NA for no key, a blank
    # processid naming no record
    import zipfile

    text = "processid,split,last_version,barcode_key,held_barcode_keys\nP2,val,1.0,NA,\n,val,1.0,,\nP3,test,1.0,NA,\n"
    with zipfile.ZipFile(tmp_path / "freeze.csv.zip", "w") as archive:
        archive.writestr("freeze.csv", text)
    carried = split_history(splits, "2.0", frozen=tmp_path / "freeze.csv.zip").to_pylist()
    assert [row["processid"] for row in carried] == ["P1", "P2", "P3"]
    assert carried[1] == {
        "processid": "P2",
        "split": "val",
        "last_version": "1.0",
        "barcode_key": None,
        "held_barcode_keys": None,
    }
    assert carried[2]["held_barcode_keys"] is None  # NA was no barcode: nothing held
    with pytest.raises(InputError, match="give --previous or --freeze, not both"):
        split_history(splits, "2.0", previous=tmp_path, frozen=frozen)


def test_a_change_no_rule_made_names_how_the_records_source_row_changed(tmp_path):
    """An export delivered again in place with a changed country (or a record now from another delivery) showed
    only "its source row, photo or an earlier stage changed"; the lineage knows which."""
    from bioscan_rebuild.export.diff import ROOT, write_release_diff
    from bioscan_rebuild.export.layout import RECORDS_LINEAGE

    base = [{"processid": "R1", "country": "Peru", "split": "train"}, {"processid": "R2", "country": "Chile"}]
    base[1]["split"] = "val"
    base.append({"processid": "Aß3", "country": "Chile", "split": "val"})  # Arrow upper-cases ß otherwise
    _published(tmp_path / "v1", base)
    lineage = pd.DataFrame(
        {
            "processid": ["R1", "R2", "Aß3"],
            "batch": ["a", "a", "a"],
            "source_file": ["e.tsv", "e.tsv", "e.tsv"],
            "source_sha256": ["1" * 64, "1" * 64, "1" * 64],
        }
    )
    lineage.to_csv(tmp_path / "v1" / ROOT / RECORDS_LINEAGE.path, index=False)
    _relist(tmp_path / "v1")
    changed = [{**base[0], "country": "Bolivia"}, {**base[1], "country": "Argentina"}, {**base[2], "country": "Peru"}]
    new = _release(changed)
    now = pd.DataFrame(
        {
            "processid": ["R1", "R2", "Aß3"],
            "batch": ["a", "b", "b"],
            "source_file": ["e.tsv", "f.tsv", "f.tsv"],
            "source_sha256": ["2" * 64] * 3,
        }
    )
    asked = []

    def sources(processids):
        asked.append(list(processids))
        return now[now["processid"].isin(processids)]

    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    changes = pd.DataFrame(columns=["processid", "field", "rule"])
    write_release_diff(tmp_path / "v1", new, rejects, changes, tmp_path / "diff", sources=sources)
    diff = pd.read_csv(tmp_path / "diff" / "release_diff.csv", dtype=str).set_index("processid")["why"]
    assert (
        diff["R1"] == "its export e.tsv was delivered again with other content (sha256 111111111111… -> 222222222222…)"
    )
    assert diff["R2"] == diff["Aß3"] == "now from batch b (f.tsv), before from batch a (e.tsv)"
    assert asked == [["Aß3", "R1", "R2"]]  # only the records to explain are looked up


def _diff_release(tmp_path, diff_rows, summary, lineage_rows=None):
    """A release root holding a release diff, its summary and (optionally) a lineage."""
    import json

    import pyarrow.csv as pacsv

    from bioscan_rebuild.export.diff import DIFF_SCHEMA

    root = tmp_path / "bioscan5m"
    (root / "metadata").mkdir(parents=True)
    table = pa.Table.from_pylist([dict(zip(DIFF_SCHEMA.names, row)) for row in diff_rows], schema=DIFF_SCHEMA)
    pacsv.write_csv(table, root / "metadata" / "release_diff.csv")
    (root / "metadata" / "release_diff_summary.json").write_text(json.dumps(summary))
    if lineage_rows is not None:
        pd.DataFrame(lineage_rows).to_csv(root / "metadata" / "records_lineage.csv", index=False)
    return root


def test_the_audit_holds_a_release_diff_to_the_release_it_describes(tmp_path):
    """The audit never read release_diff.csv: a diff saying a record is removed while it is released, a value or
    a split other than the released one, an image hash the lineage does not hold, or counts its rows do not add
    up to, passed (the manifest rewritten). Each is a finding naming the line, record and field."""
    from bioscan_rebuild.export.audit import Findings
    from bioscan_rebuild.export.audit_diff import check_release_diff
    from bioscan_rebuild.export.diff import ANOTHER_SPELLING

    released = _release(
        [
            {"processid": "P1", "split": "train", "family": "Cecidomyiidae"},
            {"processid": "P2", "split": "test", "family": None},
            {"processid": "p3", "split": "pretrain", "family": "Sciaridae"},
        ]
    )
    rows = [
        ("P2", "added", "split", None, "test", "new in this build"),
        ("P9", "removed", "split", "val", None, "no input of this build holds it"),
        ("p1", "removed", "split", "train", None, ANOTHER_SPELLING),  # the previous release held P1 twice
        ("P1", "changed", "family", "Sciaridae", "Cecidomyiidae", "superseded"),
        ("P2", "changed", "family", "Phoridae", None, "curation"),
        ("P3", "moved", "split", "train", "pretrain", "not frozen"),  # the record as the key finds it
        ("P1", "changed", "image:cropped_256", "0123456789abcdef", "aaaaaaaaaaaaaaaa", "its source photo changed"),
    ]
    summary = {
        "previous_records": 4,
        "records": 3,
        "added": 1,
        "removed": 2,
        "changed_records": 2,
        "changed_fields": 2,
        "moved": 1,
        "changed_images": 1,
    }
    lineage = [{"processid": p, "sha256_cropped_256": h} for p, h in (("P1", "a" * 64), ("P2", "b" * 64))]
    found = Findings(None)
    check_release_diff(_diff_release(tmp_path / "whole", rows, summary, lineage), released, found)
    assert found.report() == []

    tampered = [
        ("P2", "added", "split", None, "val", "new in this build"),  # released in test
        ("P1", "removed", "split", "val", None, "no input of this build holds it"),  # released
        ("P1", "changed", "family", "Sciaridae", "Phoridae", "superseded"),  # released: Cecidomyiidae
        ("P2", "changed", "family", "Phoridae", "", "curation"),  # released: missing, not ""
        ("P3", "moved", "split", "train", "test", "not frozen"),
        ("P1", "changed", "image:cropped_256", "0123456789abcdef", "bbbbbbbbbbbbbbbb", "its source photo changed"),
        ("P8", "changed", "family", "A", "B", "curation"),  # not released
    ]
    found = Findings(None)
    check_release_diff(_diff_release(tmp_path / "tampered", tampered, summary, lineage), released, found)
    where = "bioscan5m/metadata/release_diff.csv"
    assert f"{where}:2: P2 split is now 'val', the release holds 'test'" in found.report()
    assert f"{where}:3: P1 is removed, but the release holds it" in found.report()
    assert f"{where}:4: P1 family is now 'Phoridae', the release holds 'Cecidomyiidae'" in found.report()
    assert f"{where}:5: P2 family is now '', the release holds None" in found.report()
    assert f"{where}:6: P3 split is now 'test', the release holds 'pretrain'" in found.report()
    assert (
        f"{where}:7: P1 image:cropped_256 is now 'bbbbbbbbbbbbbbbb', the lineage says 'aaaaaaaaaaaaaaaa'"
        in found.report()
    )
    assert f"{where}:8: P8 is changed, but the release does not hold it" in found.report()
    summary_where = "bioscan5m/metadata/release_diff_summary.json"
    assert f"{summary_where}: removed 2, {where} holds 1" in found.report()
    assert f"{summary_where}: changed_fields 2, {where} holds 3" in found.report()
    assert f"{summary_where}: changed_records 2, {where} holds 3" in found.report()

    found = Findings(None)
    check_release_diff(
        _diff_release(tmp_path / "counts", rows, {**summary, "records": 4, "added": 2}, lineage), released, found
    )
    assert found.report() == [
        f"{summary_where}: records 4, the release holds 3",
        f"{summary_where}: added 2, {where} holds 1",
    ]
    found = Findings(None)
    check_release_diff(
        _diff_release(tmp_path / "before", rows, {**summary, "previous_records": 5}, lineage), released, found
    )
    assert found.report() == [
        f"{summary_where}: previous_records 5 - removed 2 + added 1 is not the 3 records released"
    ]
    # a diff without its summary, and --previous on a release that has none
    alone = _diff_release(tmp_path / "alone", rows, summary, lineage)
    (alone / "metadata" / "release_diff_summary.json").unlink()
    found = Findings(None)
    check_release_diff(alone, released, found)
    assert found.report() == [f"{summary_where}: missing, beside {where}"]
    (alone / "metadata" / "release_diff.csv").unlink()
    found = Findings(None)
    check_release_diff(alone, released, found, previous=tmp_path / "v1")
    assert (
        len(found.report()) == 1 and "no release_diff.csv, so nothing to check against --previous" in found.report()[0]
    )


def test_the_audit_finds_rows_a_diff_never_writes_and_a_diff_gone_that_the_config_promises(tmp_path):
    """Rows the build never writes passed the check of the release diff: one row twice, an image row that is
    not `changed`, a change without a field, a change of another name (the later copy of a record a previous
    release held twice is removed, and is no finding, whichever spelling the record kept). A diff deleted with its
    summary passed while config.json names the previous release."""
    from bioscan_rebuild.export.audit import Findings
    from bioscan_rebuild.export.audit_diff import check_release_diff
    from bioscan_rebuild.export.diff import ANOTHER_SPELLING

    released = _release([{"processid": "P1", "split": "train", "family": "Sciaridae"}])
    rows = [
        ("P1", "changed", "family", "Phoridae", "Sciaridae", "curation"),
        ("P1", "changed", "family", "Phoridae", "Sciaridae", "curation"),
        ("P1", "moved", "image:cropped_256", "0123456789abcdef", "aaaaaaaaaaaaaaaa", "not frozen"),
        ("P1", "changed", None, "x", "y", "curation"),
        ("P1", "renamed", "split", "train", "val", "curation"),
        ("P1", "removed", "split", "train", None, ANOTHER_SPELLING),  # the previous release held P1 twice: right
        ("P7", "removed", "split", "val", None, "no input of this build holds it"),
        ("P7", "removed", "split", "val", None, ANOTHER_SPELLING),  # and P7 twice: one row each, right
    ]
    summary = {"previous_records": 4, "records": 1, "added": 0, "removed": 3, "changed_records": 1}
    summary |= {"changed_fields": 3, "moved": 1, "changed_images": 0}
    lineage = [{"processid": "P1", "sha256_cropped_256": "a" * 64}]
    found = Findings(None)
    check_release_diff(_diff_release(tmp_path / "rows", rows, summary, lineage), released, found)
    where = "bioscan5m/metadata/release_diff.csv"
    assert found.report() == [
        f"{where}:6: P1: change 'renamed' is none the diff writes",
        f"{where}:4: P1: image:cropped_256 is moved: an image's row is always changed",
        f"{where}:5: P1 is changed, but the row names no field",
        f"{where}:2: P1 has 2 rows changed family",
        f"{where}:4: P1 split is now 'aaaaaaaaaaaaaaaa', the release holds 'train'",
    ]
    config = {"release": {"previous": "/data/releases/v1"}}
    gone = _diff_release(tmp_path / "gone", rows, summary)
    for name in ("release_diff.csv", "release_diff_summary.json"):
        (gone / "metadata" / name).unlink()
    found = Findings(None)
    check_release_diff(gone, released, found, config=config)
    assert found.report() == [
        "bioscan5m/metadata: no release_diff.csv or its summary, but metadata/config.json says the release follows "
        "/data/releases/v1 (release.previous): the build writes both"
    ]
    found = Findings(None)
    check_release_diff(gone, released, found, config={"release": {"previous": None}})
    assert found.report() == []


def test_a_diff_that_differs_from_the_one_made_again_is_shown_row_by_row_or_as_rows_added_and_dropped():
    """The rows named in Arrow (a counter of Python tuples took 7 GB for 10M image rows): row by row when both
    hold as many, else the rows one has more often than the other."""
    from bioscan_rebuild.export.audit import Findings
    from bioscan_rebuild.export.audit_diff import _compare_diffs
    from bioscan_rebuild.export.diff import DIFF_SCHEMA

    def table(rows):
        return pa.Table.from_pylist([dict(zip(DIFF_SCHEMA.names, r)) for r in rows], schema=DIFF_SCHEMA)

    made = [("P1", "changed", "family", "A", "B", "curation"), ("P2", "added", "split", None, "test", "new")]
    found = Findings(None)
    _compare_diffs(table([made[0], (*made[1][:5], "by hand")]), table(made), "diff.csv", found)
    assert found.report() == [
        "diff.csv:3: processid='P2', change='added', field='split', new='test', why='by hand'; the diff made again "
        "against --previous gives processid='P2', change='added', field='split', new='test', why='new'"
    ]
    found = Findings(None)
    gone = ("P3", "removed", "split", "val", None, "gone")
    _compare_diffs(table([made[0], made[0], made[1], made[1]]), table([*made, gone]), "diff.csv", found)
    assert found.report() == [
        "diff.csv: a row it holds more often than the diff made again against --previous (2 against 1): "
        "processid='P1', change='changed', field='family', old='A', new='B', why='curation'",
        "diff.csv: a row it holds more often than the diff made again against --previous (2 against 1): "
        "processid='P2', change='added', field='split', new='test', why='new'",
        "diff.csv: a row the diff made again against --previous holds more often (0 against 1): processid='P3', "
        "change='removed', field='split', old='val', why='gone'",
    ]
    # the same rows sorted otherwise: one finding, not one per line
    found = Findings(None)
    _compare_diffs(table(made[::-1]), table(made), "diff.csv", found)
    assert found.report() == ["diff.csv: the rows of the diff made again against --previous, in another order"]


def test_a_site_ingest_refused_or_no_longer_refuses_names_the_rule(tmp_path):
    """A site ingest refused (step 0, field coord, rule coordinates_refused), or one the previous release refused and
    this one takes: the diff said only "its source row, photo or an earlier stage changed" (reviewer diffm)."""
    base = {"processid": "P1", "split": "train"}
    taken, refused = _release([{**base, "coord-lat": "45.5", "coord-lon": "16.4"}]), _release([base])
    rejects = pd.DataFrame(columns=["kind", "processid", "reason"])
    logged = pd.DataFrame(
        [{"processid": "P1", "field": "coord", "old": "45,5; 16.4", "new": None, "rule": "coordinates_refused"}]
    )
    none = pd.DataFrame(columns=["processid", "field", "rule"])
    _write_csv(taken, tmp_path / "taken.csv")
    table, _ = release_diff(tmp_path / "taken.csv", refused, rejects, logged)
    assert {row["field"]: row["why"] for row in table.to_pylist()} == {
        "coord-lat": "coordinates_refused",
        "coord-lon": "coordinates_refused",
    }
    _write_csv(refused, tmp_path / "refused.csv")
    table, _ = release_diff(tmp_path / "refused.csv", taken, rejects, none, previous_changes=logged)
    assert all("coordinates_refused" in row["why"] for row in table.to_pylist()) and table.num_rows == 2
