"""Join of records and photos within a shard: duplicates, conflicts, orphans, accounting."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pytest

from bioscan_rebuild.core.errors import AccountingError
from bioscan_rebuild.core.io import write_json, write_table
from bioscan_rebuild.core.schemas import RECORD_SCHEMA, REJECT_SCHEMA, shard_groups, shard_name, shard_of
from bioscan_rebuild.ingest.accounting import account
from bioscan_rebuild.ingest.inventory import INVENTORY_SCHEMA, inventory_shard, list_to_shards
from bioscan_rebuild.ingest.join import join_shard, join_shard_files
from bioscan_rebuild.ingest.local import ingest_local
from bioscan_rebuild.ingest.parse import parse_to_shards


def records(batch, rows):
    """rows: (processid, family, line)."""
    data = []
    for pid, family, line in rows:
        row = {f.name: None for f in RECORD_SCHEMA}
        row.update(
            processid=pid,
            family=family,
            batch=batch,
            source_file=f"{batch}.tsv",
            source_line=line,
            source_layout="bcdm2023",
            source_sha256="0" * 64,
            marker_code="COI-5P",
        )
        data.append(row)
    return pa.Table.from_pylist(data, schema=RECORD_SCHEMA)


def images(batch, rows):
    """rows: (processid, sha, problem)."""
    data = [
        {
            "batch": batch,
            "image_path": f"{pid}-{i}.jpg",
            "processid": pid,
            "image_sha256": sha,
            "image_bytes": 10,
            "image_format": "jpeg",
            "image_width": 1024,
            "image_height": 768,
            "image_problem": problem,
            "image_problem_detail": problem,
        }
        for i, (pid, sha, problem) in enumerate(rows)
    ]
    return pa.Table.from_pylist(data, schema=INVENTORY_SCHEMA)


def reasons(rejects: pa.Table, kind: str) -> dict:
    out = {}
    for k, pid, reason in zip(
        rejects["kind"].to_pylist(), rejects["processid"].to_pylist(), rejects["reason"].to_pylist()
    ):
        if k == kind:
            out.setdefault(pid, []).append(reason)
    return out


def test_join_keeps_one_record_per_processid_with_its_photo():
    recs = [
        records("a", [("P1", "Phoridae", 2), ("P2", "Phoridae", 3), ("P3", "Sciaridae", 4), ("P4", "X", 5)]),
        records("b", [("P1", "Phoridae", 2), ("P2", "Sciaridae", 3)]),
    ]
    imgs = [
        images(
            "a",
            [
                ("P1", "s1", None),
                ("P2", "s2", None),
                ("P3", "s3", "undecodable"),
                ("P9", "s9", None),
                ("P4", "s4", None),
                ("P4", "s4b", None),
            ],
        )
    ]
    kept, rejects, acc, _ = join_shard(recs, imgs, ["a", "b"], duplicate_policy="reject")
    assert kept["processid"].to_pylist() == ["P1"]
    assert kept["batch"].to_pylist() == ["a"] and kept["image_sha256"].to_pylist() == ["s1"]
    assert reasons(rejects, "record") == {
        "P1": ["duplicate_record"],
        "P2": ["duplicate_conflict", "duplicate_conflict"],
        "P3": ["image_rejected"],
        "P4": ["image_rejected"],
    }
    assert reasons(rejects, "image") == {
        "P2": ["record_rejected"],
        "P3": ["undecodable"],
        "P4": ["conflicting_images", "conflicting_images"],
        "P9": ["no_record"],
    }
    assert acc["records_in"] == 6 and acc["records_kept"] == 1
    assert acc["images_in"] == 6 and acc["images_kept"] == 1


def test_latest_policy_lets_the_later_batch_win():
    recs = [records("a", [("P2", "Phoridae", 3)]), records("b", [("P2", "Sciaridae", 9)])]
    imgs = [images("a", [("P2", "old", None)]), images("b", [("P2", "new", None)])]
    kept, rejects, _, _ = join_shard(recs, imgs, ["a", "b"], duplicate_policy="latest")
    row = kept.to_pylist()[0]
    assert (row["family"], row["batch"], row["image_sha256"]) == ("Sciaridae", "b", "new")
    assert reasons(rejects, "record") == {"P2": ["superseded"]}
    assert reasons(rejects, "image") == {"P2": ["superseded"]}
    assert "replaced by b:" in rejects.filter(pa.compute.equal(rejects["kind"], "record"))["detail"][0].as_py()


def test_a_redelivery_replaces_the_record_by_default_and_its_fields_are_logged():
    """BOLD re-exports a processid with an updated identification: the latest delivery stays in (policy latest,
    the default), the earlier row is superseded, and what changed is logged field by field with both sources."""
    recs = [records("a", [("P1", "Phoridae", 2), ("P2", "Phoridae", 3)]), records("b", [("P2", "Sciaridae", 9)])]
    imgs = [images("a", [("P1", "s1", None), ("P2", "s2", None)])]  # the photos came with the first delivery
    kept, rejects, _, redelivered = join_shard(recs, imgs, ["a", "b"])
    assert [(r["processid"], r["family"], r["batch"], r["image_sha256"]) for r in kept.to_pylist()] == [
        ("P1", "Phoridae", "a", "s1"),
        ("P2", "Sciaridae", "b", "s2"),
    ]
    assert reasons(rejects, "record") == {"P2": ["superseded"]} and reasons(rejects, "image") == {}
    assert redelivered.to_pylist() == [
        {
            "processid": "P2",
            "field": "family",
            "old": "Phoridae",
            "new": "Sciaridae",
            "old_source": "a:a.tsv:3",
            "new_source": "b:b.tsv:9",
            "rule": "superseded",
        }
    ]
    kept, rejects, _, redelivered = join_shard(recs, imgs, ["a", "b"], duplicate_policy="first")
    assert [r["family"] for r in kept.to_pylist()] == ["Phoridae", "Phoridae"]
    assert reasons(rejects, "record") == {"P2": ["later_delivery"]}
    assert redelivered["old"].to_pylist() == ["Sciaridae"] and redelivered["rule"].to_pylist() == ["later_delivery"]


def test_copies_that_differ_only_in_unicode_form_or_invisible_characters_are_the_same_record():
    """One copy of a record typed decomposed (NFD: "Psycho\u0301da", as macOS writes) or with a zero-width space:
    within a delivery both copies were refused as a conflict (the specimen lost); across deliveries a change was
    logged whose two values look the same. The kept copy's text is as delivered."""
    recs = [
        records("a", [("P1", "Psych\u00f3didae", 2), ("P1", "Psycho\u0301didae", 3), ("P2", "Phoridae", 4)]),
        records("b", [("P2", "Phori\u200bdae", 7)]),
    ]
    imgs = [images("a", [("P1", "s1", None), ("P2", "s2", None)])]
    kept, rejects, _, redelivered = join_shard(recs, imgs, ["a", "b"])
    assert sorted(kept["processid"].to_pylist()) == ["P1", "P2"]
    assert reasons(rejects, "record") == {"P1": ["duplicate_record"], "P2": ["duplicate_record"]}
    assert redelivered.num_rows == 0


def test_copies_that_differ_only_in_white_space_or_the_case_of_their_bin_are_the_same_record():
    """A trailing space, a doubled space or a BIN in lower case (the taxonomy stage cleans each the same way): both
    copies were refused as a conflict and the specimen lost, and a redelivery logged a change whose values look
    the same. A different name is still a conflict."""
    first = records(
        "a", [("P1", "Phoridae", 2), ("P1", "Phoridae ", 3), ("P2", "Psychodidae", 4), ("P3", "Phoridae", 5)]
    )
    for name, values in (
        ("bin_uri", ["BOLD:AAA1234", "bold:aaa1234 ", None, None]),
        ("sampleid", ["S  1", "S\u00a01", None, None]),  # a no-break space: RE2's \s is ASCII only
    ):
        first = first.set_column(first.schema.get_field_index(name), name, pa.array(values, pa.string()))
    recs = [
        pa.concat_tables([first, records("a", [("P3", "Sciaridae", 6)])]),
        records("b", [("P2", " Psychodidae", 7)]),
    ]
    imgs = [images("a", [("P1", "s1", None), ("P2", "s2", None), ("P3", "s3", None)])]
    kept, rejects, _, redelivered = join_shard(recs, imgs, ["a", "b"])
    assert sorted(kept["processid"].to_pylist()) == ["P1", "P2"]
    assert reasons(rejects, "record") == {
        "P1": ["duplicate_record"],
        "P2": ["duplicate_record"],
        "P3": ["duplicate_conflict", "duplicate_conflict"],
    }
    assert redelivered.num_rows == 0
    assert kept.filter(pa.compute.equal(kept["processid"], "P1"))["family"].to_pylist() == ["Phoridae"]  # as delivered


def test_copies_that_the_barcode_and_bin_steps_make_one_are_the_same_record():
    """Two copies of a record whose sequences differ only in the Ns at their ends, or whose BINs differ only in
    their spelling (``AAA1234``, ``BOLD: AAA1234``): the barcode and BIN steps make them one barcode and one BIN,
    yet both copies were refused as a conflict (the specimen lost), and across deliveries a change was logged whose
    released value stayed the same (reviewer barcodes). A different sequence or BIN is still a conflict."""
    sequence = "ACTGGTTCAGCTCGAGCAACTGG"
    first = records("a", [(f"P{k}", "Phoridae", 2 + k) for k in (1, 1, 2, 2, 3, 3, 4, 4)])
    cells = {
        "nucleotides": [sequence, f"NN{sequence}NNN", sequence, sequence, sequence, sequence, sequence, sequence[:-1]],
        "bin_uri": [None, None, "BOLD:AAA1234", "AAA1234", "bold: aaa1234", "BOLD:AAA1234", None, None],
    }
    for name, values in cells.items():
        first = first.set_column(first.schema.get_field_index(name), name, pa.array(values, pa.string()))
    later = records("b", [("P1", "Phoridae", 20)])
    later = later.set_column(
        later.schema.get_field_index("nucleotides"), "nucleotides", pa.array([f"NNNNN{sequence}NN"], pa.string())
    )
    imgs = [images("a", [(f"P{k}", f"s{k}", None) for k in (1, 2, 3, 4)])]
    for policy in ("latest", "reject"):
        kept, rejects, _, redelivered = join_shard([first, later], imgs, ["a", "b"], duplicate_policy=policy)
        assert sorted(kept["processid"].to_pylist()) == ["P1", "P2", "P3"], policy
        found = reasons(rejects, "record")
        assert found["P2"] == found["P3"] == ["duplicate_record"] and len(found["P1"]) == 2, (policy, found)
        assert set(found["P1"]) == {"duplicate_record"} and found["P4"] == ["duplicate_conflict"] * 2
        assert redelivered.num_rows == 0


def test_copies_whose_names_curation_makes_one_are_the_same_record():
    """Two copies of a record whose names differ only where curation's steps 1 and 2 make them one (an author
    citation, capitals, quotes, an accent, a look-alike letter, a qualifier's dot, a guess): both copies were
    refused as a conflict and the specimen lost (reviewer names). Another name is still a conflict."""
    pairs = [
        ("species", "Aedes aegypti", "Aedes aegypti (Linnaeus, 1762)"),
        ("genus", "Aedes", "AEDES"),
        ("species", "Aedes aegypti", "'Aedes aegypti'"),
        ("species", "Aedes schaferi", "Aedes sch\u00e4feri"),
        ("genus", "Aedes", "\u0410edes"),
        ("species", "Aedes cf aegypti", "Aedes cf. aegypti"),
        ("genus", "Aedes?", None),
        ("species", "Aedes aegypti", "Aedes vexans"),  # another species: a conflict
    ]
    rows = [(f"P{k}", "Culicidae", 2 + 2 * k + copy) for k in range(len(pairs)) for copy in (0, 1)]
    table = records("a", rows)
    for field in ("genus", "species"):
        values = [None] * len(rows)
        for k, (rank, first, second) in enumerate(pairs):
            if rank == field:
                values[2 * k], values[2 * k + 1] = first, second
        table = table.set_column(table.schema.get_field_index(field), field, pa.array(values, pa.string()))
    imgs = [images("a", [(f"P{k}", f"s{k}", None) for k in range(len(pairs))])]
    kept, rejects, _, _ = join_shard([table], imgs, ["a"], duplicate_policy="latest")
    found = reasons(rejects, "record")
    last = f"P{len(pairs) - 1}"
    assert sorted(kept["processid"].to_pylist()) == [f"P{k}" for k in range(len(pairs) - 1)], found
    assert found[last] == ["duplicate_conflict"] * 2
    assert all(found[f"P{k}"] == ["duplicate_record"] for k in range(len(pairs) - 1)), found


def test_copies_whose_places_differ_only_in_letter_case_are_the_same_record():
    """``CANADA`` and ``Canada`` are one place to curation, which writes each place one way: two copies that differed
    only so were refused as a conflict (the specimen lost). Another place is still a conflict."""
    table = records("a", [("P1", "Culicidae", 2), ("P1", "Culicidae", 3), ("P2", "Culicidae", 4)])
    for field, values in {
        "country": ["CANADA", "Canada", "Canada"],
        "province_state": ["ontario", "Ontario", "Ontario"],
    }.items():
        table = table.set_column(table.schema.get_field_index(field), field, pa.array(values, pa.string()))
    later = records("b", [("P2", "Culicidae", 2)])
    later = later.set_column(later.schema.get_field_index("country"), "country", pa.array(["Mexico"], pa.string()))
    imgs = [images("a", [("P1", "s1", None), ("P2", "s2", None)])]
    kept, rejects, _, redelivered = join_shard([table, later], imgs, ["a", "b"], duplicate_policy="latest")
    found = reasons(rejects, "record")
    assert sorted(kept["processid"].to_pylist()) == ["P1", "P2"] and found["P1"] == ["duplicate_record"]
    assert sorted(redelivered.to_pydict()["field"]) == ["country", "province_state"]  # another place: a change


def test_copies_compare_their_bins_sites_and_end_ns_as_the_later_steps_read_them():
    """A BIN with a lower-case Cyrillic or Greek look-alike was compared upper-cased, so another letter than
    curation reads (a later delivery's BIN dropped as the same copy); with ``trim_end_n: false`` end Ns the release
    keeps were ignored (the latest barcode dropped); a delivery giving a site ingest refuses was a copy of one giving
    none (which delivery's refused site the changes named was chance; reviewer diffm)."""

    def with_cells(table, **cells):
        for name, values in cells.items():
            table = table.set_column(
                table.schema.get_field_index(name), name, pa.array(values, type=table.schema.field(name).type)
            )
        return table

    imgs = [images("a", [("P1", "s1", None), ("P2", "s2", None)])]
    older = with_cells(
        records("a", [("P1", "Phoridae", 2), ("P2", "Phoridae", 3)]), bin_uri=["BOLD:AAI1234", "BOLD:AAY1234"]
    )
    newer = with_cells(
        records("b", [("P1", "Phoridae", 4), ("P2", "Phoridae", 5)]), bin_uri=["bold:aa\u04cf1234", "bold:aa\u04431234"]
    )
    kept, rejects, _, redelivered = join_shard([older, newer], imgs, ["a", "b"])
    found = reasons(rejects, "record")
    # curation reads the small Cyrillic palochka as l (AAL1234), the small u as Y (AAY1234)
    assert found == {"P1": ["superseded"], "P2": ["duplicate_record"]}
    assert [(r["processid"], r["field"]) for r in redelivered.to_pylist()] == [("P1", "bin_uri")]
    sequence = "ACTGGTTCAGCTCGAGCAACTGG"
    older = with_cells(records("a", [("P1", "Phoridae", 2)]), nucleotides=[sequence])
    newer = with_cells(records("b", [("P1", "Phoridae", 4)]), nucleotides=[f"NNNNN{sequence}NN"])
    for trim, outcome in ((True, "duplicate_record"), (False, "superseded")):
        kept, rejects, _, redelivered = join_shard([older, newer], imgs[:1], ["a", "b"], trim_end_n=trim)
        assert reasons(rejects, "record") == {"P1": [outcome]}, trim
        assert kept["nucleotides"].to_pylist() == ([sequence] if trim else [f"NNNNN{sequence}NN"])
    # a refused site is no content (the release has no site either way; "(95,10)" and "95; 10" say one thing in two
    # layouts: comparing the text lost the record as a conflict, reviewer diffn), but each copy's refused text is
    # named with its own source, whichever copy is kept: none then refused, refused then none, two texts
    site = {"A": (None, "43,5; 10.2"), "B": ("43,5; 10.2", None), "C": ("(95,10)", "95; 10")}
    ids = sorted(site)
    older = with_cells(
        records("a", [(f"{k}-21", "Phoridae", 2 + i) for i, k in enumerate(ids)]), coord_raw=[site[k][0] for k in ids]
    )
    newer = with_cells(
        records("b", [(f"{k}-21", "Phoridae", 9 + i) for i, k in enumerate(ids)]), coord_raw=[site[k][1] for k in ids]
    )
    photos = [images("a", [(f"{k}-21", f"s{k}", None) for k in ids])]
    expected = {
        ("A-21", "43,5; 10.2", "b:b.tsv:9"),
        ("B-21", "43,5; 10.2", "a:a.tsv:3"),
        ("C-21", "(95,10)", "a:a.tsv:4"),
        ("C-21", "95; 10", "b:b.tsv:11"),
    }
    for policy in ("latest", "first", "reject"):
        kept, rejects, _, redelivered = join_shard([older, newer], photos, ["a", "b"], duplicate_policy=policy)
        assert sorted(kept["processid"].to_pylist()) == ["A-21", "B-21", "C-21"], policy
        named = {(r["processid"], r["old"], r["old_source"]) for r in redelivered.to_pylist() if r["field"] == "coord"}
        assert named == expected, policy
    # one delivery holding the record twice, once with a refused site: the same record, its site named
    both = pa.concat_tables(
        [older.slice(0, 1), with_cells(records("a", [("A-21", "Phoridae", 5)]), coord_raw=["(95,10)"])]
    )
    kept, rejects, _, redelivered = join_shard([both], photos, ["a"])
    assert kept["processid"].to_pylist() == ["A-21"] and reasons(rejects, "record") == {"A-21": ["duplicate_record"]}
    assert [r["old"] for r in redelivered.to_pylist()] == ["(95,10)"]
    # a rank or BIN curation reads as none ("n.a.", "-", "unknown") is no other content than a blank one
    older = with_cells(records("a", [("P1", "Phoridae", 2)]), bin_uri=["n.a."], genus=["not classified"])
    newer = with_cells(records("b", [("P1", "Phoridae", 4)]), bin_uri=[None], genus=["-"])
    for policy in ("latest", "reject"):
        kept, rejects, _, redelivered = join_shard([older, newer], imgs[:1], ["a", "b"], duplicate_policy=policy)
        assert reasons(rejects, "record") == {"P1": ["duplicate_record"]} and redelivered.num_rows == 0, policy


def test_different_copies_in_one_delivery_are_rejected_whatever_the_policy():
    """Delivery order cannot choose between two rows of one batch. An earlier batch's clean copy stays under
    ``first`` (the earliest delivery decides); under ``latest`` the deciding delivery is the conflicting one, so the
    older copy, which it replaces, must not come back in its place (it was released, silently)."""
    recs = [records("a", [("P1", "Phoridae", 2)]), records("b", [("P1", "Sciaridae", 5), ("P1", "Muscidae", 6)])]
    imgs = [images("a", [("P1", "s1", None)])]
    kept, rejects, _, _ = join_shard(recs, imgs, ["a", "b"], duplicate_policy="first")
    assert [(r["family"], r["batch"]) for r in kept.to_pylist()] == [("Phoridae", "a")]
    assert reasons(rejects, "record") == {"P1": ["duplicate_conflict", "duplicate_conflict"]}
    details = rejects.filter(pa.compute.equal(rejects["kind"], "record"))["detail"].to_pylist()
    assert all(d.endswith("in the same delivery") for d in details)
    kept, rejects, _, _ = join_shard(recs, imgs, ["a", "b"], duplicate_policy="latest")
    assert kept.num_rows == 0
    assert reasons(rejects, "record") == {"P1": ["duplicate_conflict"] * 3}
    details = sorted(rejects.filter(pa.compute.equal(rejects["kind"], "record"))["detail"].to_pylist())
    assert details[-1] == "the copies of delivery b differ from each other"


def test_identical_photos_are_one_photo():
    kept, rejects, _, _ = join_shard(
        [records("a", [("P1", "F", 2)])], [images("a", [("P1", "s", None), ("P1", "s", None)])], ["a"]
    )
    assert kept.num_rows == 1 and reasons(rejects, "image") == {"P1": ["duplicate_image"]}


def test_records_without_photos_kept_when_images_are_not_required():
    kept, rejects, acc, _ = join_shard([records("a", [("P1", "F", 2)])], [], ["a"], require_images=False)
    assert kept.num_rows == 1 and kept["image_sha256"].null_count == 1 and rejects.num_rows == 0
    kept, rejects, _, _ = join_shard([records("a", [("P1", "F", 2)])], [], ["a"])
    assert kept.num_rows == 0 and reasons(rejects, "record") == {"P1": ["no_image"]}


def test_join_output_does_not_depend_on_input_order():
    recs = [records("a", [("P3", "F", 4), ("P1", "F", 2), ("P2", "F", 3)])]
    imgs = [images("a", [("P2", "s2", None), ("P1", "s1", None), ("P3", "s3", None)])]
    kept1, rej1, _, _ = join_shard(recs, imgs, ["a"])
    kept2, rej2, _, _ = join_shard([recs[0].take([2, 0, 1])], [imgs[0].take([1, 2, 0])], ["a"])
    assert kept1.equals(kept2) and rej1.equals(rej2)


def test_accounting_fails_when_a_shard_loses_rows(tmp_path):
    write_json(
        {
            "batch": "a",
            "export": "x",
            "export_sha256": "0",
            "layout": "v4",
            "data_lines": 5,
            "blank_lines": 0,
            "records": 5,
            "rejected": {},
        },
        tmp_path / "parse.json",
    )
    write_json(
        {"records_in": 5, "images_in": 0, "records_kept": 4, "images_kept": 0, "rejected": {"record": {}, "image": {}}},
        tmp_path / "shard.json",
    )
    write_table(REJECT_SCHEMA.empty_table(), tmp_path / "rejects.parquet")
    with pytest.raises(AccountingError, match="records: 5 inputs != 4 kept \\+ 0 rejected"):
        account([tmp_path / "parse.json"], [], [tmp_path / "shard.json"], [tmp_path / "rejects.parquet"])


def test_shard_keys_are_stable_md5():
    digest = hashlib.md5(b"CRCBB46471-23").hexdigest()
    assert digest.startswith("2e")  # the chunk of this real record in the published BIOSCAN-5M layout
    assert shard_of(["CRCBB46471-23"], 1000).tolist() == [int(digest[:8], 16) % 1000]
    assert shard_of(["a", "b", "a"], 7).tolist()[::2] == shard_of(["a", "a"], 7).tolist()


def test_ingest_local_on_real_exports_and_photos(realdata, tmp_path):
    """The three real photographed AACTA specimens join to their rows in the real 2023 export."""
    export = realdata / "barcode-constrained-phylogeny/tests/BOLD_Public.18-Dec-2023/BOLD_Public.18-Dec-2023.tsv"
    photos = realdata / "Bioscan-ImgFilter/dataset"
    summary = ingest_local([export], [photos], tmp_path, shards=3)
    assert summary["inputs"] == {"records": 999, "images": 10}
    assert summary["kept"] == {"records": 3, "images": 3}
    assert summary["rejects_by_reason"]["record"] == {"no_image": 996}
    assert summary["rejects_by_reason"]["image"] == {"no_record": 7}
    saved = json.loads((tmp_path / "accounting.json").read_text())
    assert saved["balanced"] is True


def test_shard_groups_cover_every_shard_once_in_order():
    assert list(shard_groups(5, 1)) == [f"shard-{i:03d}" for i in range(5)]
    groups = shard_groups(5, 2)
    assert list(groups) == ["shards-000-001", "shards-002-003", "shard-004"]
    assert [s for members in groups.values() for s in members] == list(range(5))
    assert list(shard_groups(3, 16)) == ["shards-000-002"]
    with pytest.raises(ValueError):
        shard_groups(4, 0)


def test_photo_jobs_over_groups_of_shards_join_as_per_shard_jobs_do(realdata, tmp_path):
    """Listing and inventory per group of shards (photo_job_shards), each shard's join taking its own photos
    from the group's file: every shard's records, rejects and accounting are byte for byte the per-shard run's."""
    export = realdata / "barcode-constrained-phylogeny/tests/BOLD_Public.18-Dec-2023/BOLD_Public.18-Dec-2023.tsv"
    photos = realdata / "Bioscan-ImgFilter/dataset"
    n_shards = 5
    ingest_local([export], [photos], tmp_path / "per-shard", shards=n_shards)
    grouped = tmp_path / "grouped"
    parse_to_shards(export, "export-1", n_shards, grouped / "exports" / "export-1")
    list_to_shards(photos, "images-1", n_shards, grouped / "images" / "images-1", group_size=2)
    groups = shard_groups(n_shards, 2)
    assert sorted(p.stem for p in (grouped / "images" / "images-1" / "listing").iterdir()) == sorted(groups)
    for name in groups:
        inventory_shard(
            grouped / "images" / "images-1" / "listing" / f"{name}.parquet",
            {"images-1": photos},
            grouped / "images" / "images-1" / "inventory" / f"{name}.parquet",
        )
    compared = 0
    for name, members in groups.items():
        for shard in members:
            outdir = grouped / "shards" / shard_name(shard)
            join_shard_files(
                [grouped / "exports" / "export-1" / "records" / f"{shard_name(shard)}.parquet"],
                [grouped / "images" / "images-1" / "inventory" / f"{name}.parquet"],
                ["export-1", "images-1"],
                outdir,
                shard=(shard, n_shards),
                require_images=True,
            )
            for file in ("records.parquet", "rejects.parquet", "accounting.json"):
                expected = tmp_path / "per-shard" / "shards" / shard_name(shard) / file
                assert (outdir / file).read_bytes() == expected.read_bytes(), (shard, file)
                compared += 1
    assert compared == 3 * n_shards


def test_the_join_command_offers_every_duplicate_policy_and_says_the_default():
    """The command used to refuse ``first`` and call ``reject`` its default (the default is ``latest``)."""
    import argparse

    from bioscan_rebuild.cli.ingest import _add_ingest_options, _ingest_params
    from bioscan_rebuild.ingest.join import POLICIES

    parser = argparse.ArgumentParser()
    _add_ingest_options(parser)
    (action,) = [a for a in parser._actions if a.dest == "duplicate_policy"]
    assert set(action.choices) == set(POLICIES) and "default: latest" in action.help
    assert _ingest_params(parser.parse_args([])).duplicate_policy == "latest"
    assert _ingest_params(parser.parse_args(["--duplicate-policy", "first"])).duplicate_policy == "first"


def test_a_conflict_among_many_copies_names_a_few_and_counts_the_rest():
    """Every copy's detail named every other copy: the work and the text grew as the square of the copies (2,000
    rows of one processid, as a spreadsheet fill-down writes: 24 s, 110 MB of details)."""
    copies = 2000
    recs = [records("a", [("P1", f"Family{i}", i + 2) for i in range(copies)])]
    kept, rejects, _, _ = join_shard(recs, [], ["a"])
    details = rejects.filter(pa.compute.equal(rejects["kind"], "record"))["detail"].to_pylist()
    assert kept.num_rows == 0 and len(details) == copies
    assert (
        details[0] == f"differs from a:a.tsv:3, a:a.tsv:4, a:a.tsv:5 and {copies - 4} more copies in the same delivery"
    )
    assert (
        details[5] == f"differs from a:a.tsv:2, a:a.tsv:3, a:a.tsv:4 and {copies - 4} more copies in the same delivery"
    )
    assert sum(map(len, details)) < 100 * copies


def test_a_specimen_with_rows_for_two_kept_markers_is_one_record_of_the_first_listed():
    """With ``ingest.markers: [COI-5P, COI-3P]`` a specimen sequenced for both had two rows of one processid with
    different content: both were refused as a conflict ("differs ... in the same delivery") and the specimen lost.
    The first-listed marker's row of a delivery is the record, the other ``other_marker``; between deliveries the
    duplicate policy decides, and the change is logged."""
    five, three = records("a", [("P1", "Phoridae", 2), ("P2", "Phoridae", 4)]), records("a", [("P1", "Phoridae", 3)])
    three = three.set_column(three.schema.get_field_index("marker_code"), "marker_code", pa.array(["COI-3P"]))
    later = records("b", [("P2", "Phoridae", 9)])
    later = later.set_column(later.schema.get_field_index("marker_code"), "marker_code", pa.array(["COI-3P"]))
    imgs = [images("a", [("P1", "s1", None), ("P2", "s2", None)])]
    kept, rejects, acc, redelivered = join_shard([five, three, later], imgs, ["a", "b"], markers=("COI-5P", "COI-3P"))
    # P1: one delivery, two markers: the first-listed; P2: a later delivery of another marker replaces it (latest),
    # and the redeliveries say so, as for any field
    assert [(r["processid"], r["marker_code"], r["batch"]) for r in kept.to_pylist()] == [
        ("P1", "COI-5P", "a"),
        ("P2", "COI-3P", "b"),
    ]
    assert reasons(rejects, "record") == {"P1": ["other_marker"], "P2": ["superseded"]}
    detail = rejects.filter(pa.compute.equal(rejects["kind"], "record"))["detail"][0].as_py()
    assert detail == "marker COI-3P: the specimen's COI-5P row is the record (ingest.markers order)"
    assert acc["records_in"] == 4 and acc["records_kept"] == 2
    assert [(r["processid"], r["field"], r["old"], r["new"]) for r in redelivered.to_pylist()] == [
        ("P2", "marker_code", "COI-5P", "COI-3P")
    ]
    kept, rejects, _, _ = join_shard([five, three, later], imgs, ["a", "b"], markers=("COI-3P", "COI-5P"))
    assert [(r["processid"], r["marker_code"]) for r in kept.to_pylist()] == [("P1", "COI-3P"), ("P2", "COI-3P")]


def test_a_batch_the_batch_order_does_not_name_is_refused():
    """`ingest join --batch-order sampleb,sample-a` (a typo): the unnamed batch ranked last, as the latest delivery,
    and its copy replaced the later one's, exit 0."""
    import pytest

    from bioscan_rebuild.core.errors import InputError

    recs = [records("a", [("P1", "Phoridae", 2)]), records("b", [("P1", "Sciaridae", 5)])]
    imgs = [images("b", [("P1", "s1", None)])]
    assert join_shard(recs, imgs, ["a", "b"])[0]["family"].to_pylist() == ["Sciaridae"]
    with pytest.raises(InputError, match=r"batches \['b'\] are not in the batch order \['bb', 'a'\]"):
        join_shard(recs, imgs, ["bb", "a"])
    with pytest.raises(InputError, match=r"batches \['b'\] are not in the batch order \['a'\]"):
        join_shard(recs[:1], imgs, ["a"])  # a photo's batch too
