"""The release's layout: every path and file name of the release, one owner each.

Beside the root folder ``bioscan5m/`` (:data:`ROOT`): ``MANIFEST.json`` (every file's size and sha256),
``accounting.json`` (the record accounting) and the optional ``zips/`` (:data:`ZIP_DIR`).

Under ``bioscan5m/``:

- ``metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv``: the 23 columns in order, empty cells for missing
  values; rows by split (published order), then shard, then ingest order.
- ``metadata/parquet/data/{split}-{i:05d}-of-{n:05d}.parquet``: the same table per split (Hugging Face
  layout), row groups of about ``row_group_bytes``, files of about ``file_bytes``; taxonomy and geography
  columns are dictionary-encoded (categorical when read).
- ``images_parquet/data/{split}-…parquet``: processid, split, ``image`` = struct<bytes: binary, path: string>
  (the ``image_package`` JPEG; no compression and no dictionary on the bytes).
- ``hdf5/BIOSCAN_5M.h5``: one group per split that holds records; ``image`` = resizable 1-D dataset of
  variable-length uint8 (JPEG bytes, no filter; 0 bytes: the record has no image in that package), ``processid``
  and the label datasets (taxon, the ranks, dna_bin, dna_barcode, chunk: not geography or size fields) beside it
  (UTF-8), chunked
  along axis 0, written in batches; file attributes for licence, version and provenance.
- ``images/{package}/{split}/{chunk}/{processid}.jpg`` (chunk folder only for pretrain/train/other_heldout),
  each its own file: a reflink of the content-addressed store's where the file system has them, else a copy
  (never a hard link: editing a released image must not edit the store).
- ``metadata/jsonld/{split}.jsonld``, ``croissant.json``, and the side files from earlier stages
  (:data:`SIDE_FILES`): ``metadata/bbox.tsv``, ``barcodes.fasta``, ``rejects.csv``, ``changes.csv``,
  ``split_summary.csv``, ``records_lineage.csv``.
- the optional zips hold the image packages as published:
  ``BIOSCAN_5M_{package}_{pretrain.01,pretrain.02,train,eval}.zip`` (:data:`ZIP_GROUPS`, :func:`zip_name`).

Paths under the root are relative POSIX strings.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "bioscan5m"
ZIP_DIR = "zips"  # beside ROOT: the archives hold ROOT/images/..., so they are not part of the tree they pack
MANIFEST = "MANIFEST.json"  # beside ROOT
ACCOUNTING = "accounting.json"  # beside ROOT

METADATA_DIR = "metadata"
CSV_PATH = "metadata/csv/BIOSCAN_5M_Insect_Dataset_metadata.csv"
PARQUET_DIR = "metadata/parquet/data"
JSONLD_DIR = "metadata/jsonld"
IMAGES_DIR = "images"
IMAGES_PARQUET_DIR = "images_parquet/data"
HDF5_PATH = "hdf5/BIOSCAN_5M.h5"
CROISSANT_PATH = "croissant.json"
# written when a release follows a previous one (release.previous): export.diff
RELEASE_DIFF_PATH = "metadata/release_diff.csv"
RELEASE_DIFF_SUMMARY_PATH = "metadata/release_diff_summary.json"


@dataclass(frozen=True)
class ReleaseFile:
    """A file at a fixed path under ROOT, as ``croissant.json`` describes it."""

    path: str
    id: str  # the Croissant FileObject's @id
    media_type: str
    description: str


METADATA_CSV = ReleaseFile(CSV_PATH, "metadata_csv", "text/csv", "The 23-column metadata table, one row per record.")
HDF5 = ReleaseFile(
    HDF5_PATH,
    "hdf5",
    "application/x-hdf5",
    "Labels (taxon, ranks, BIN, DNA barcode, chunk) and images in one HDF5 file, a group per split; an image of "
    "0 bytes is a record without one (no RecordSet: mlcroissant has no HDF5 reader).",
)
BBOX = ReleaseFile(
    "metadata/bbox.tsv", "bbox_tsv", "text/tab-separated-values", "Insect bounding boxes in original_full pixels."
)
BARCODES_FASTA = ReleaseFile(
    "metadata/barcodes.fasta", "barcodes_fasta", "text/x-fasta", "DNA barcodes, one FASTA entry per record."
)
REJECTS = ReleaseFile(
    "metadata/rejects.csv", "rejects_csv", "text/csv", "Records left out of the release, with the reason."
)
CHANGES = ReleaseFile(
    "metadata/changes.csv",
    "changes_csv",
    "text/csv",
    "Changes made to records while rebuilding: redeliveries and refused sites (step 0), then label curation.",
)
SPLIT_SUMMARY = ReleaseFile(
    "metadata/split_summary.csv", "split_summary_csv", "text/csv", "Samples, barcodes and species per split."
)
RECORDS_LINEAGE = ReleaseFile(
    "metadata/records_lineage.csv",
    "records_lineage_csv",
    "text/csv",
    "Where each released record came from and what made it: batch, export file, its sha256 and line, the raw "
    "sequence and its marker, the source photo and its sha256, the detector (version, parameter hash), the image "
    "parameters' hash, each released image's sha256, and the changes applied (rule:field of its changes.csv rows, "
    "in order).",
)
RECORDS_LINEAGE_PARQUET = ReleaseFile(
    "metadata/records_lineage.parquet",
    "records_lineage_parquet",
    "application/x-parquet",
    "records_lineage.csv as Parquet.",
)
BARCODE_QC = ReleaseFile(
    "metadata/barcode_qc.csv",
    "barcode_qc_csv",
    "text/csv",
    "Barcode quality control per released record: lengths, gaps, N runs, ambiguity codes, how it was cleaned.",
)
BARCODE_QC_PARQUET = ReleaseFile(
    "metadata/barcode_qc.parquet", "barcode_qc_parquet", "application/x-parquet", "barcode_qc.csv as Parquet."
)
PROVENANCE = ReleaseFile(
    "metadata/provenance.jsonld",
    "provenance_jsonld",
    "application/ld+json",
    "The build as a PROV-O graph: every job (rule, parameter hash), every input and output file with its sha256, "
    "the software and its versions; it names croissant.json.",
)
CONFIG = ReleaseFile(
    "metadata/config.json", "config_json", "application/json", "The build's config, resolved (every default filled)."
)
CORRECTION_OUTCOMES = ReleaseFile(
    "metadata/corrections.tsv",
    "corrections_tsv",
    "text/tab-separated-values",
    "Every maintainer's record correction (taxonomy.corrections: processid, field, value, reason, source) with its "
    "outcome: applied (the label was corrected; a record a later stage removed, for its photo or its scope, is in "
    "rejects.csv, not in the release), excluded, no_change, record_rejected (refused for its barcode or by ingest: "
    "see rejects.csv), unknown_processid, invalid_reason, overridden (a later row for the same field of the record "
    "is the maintainer's word: its own outcome says whether it was applied), unknown_field or invalid_value.",
)
BOX_CORRECTION_OUTCOMES = ReleaseFile(
    "metadata/box_corrections.tsv",
    "box_corrections_tsv",
    "text/tab-separated-values",
    "Every maintainer's box answer from the review queue (images.box_corrections) with its outcome: applied, "
    "clipped, superseded, photo_changed, photo_unusable, record_rejected, invalid_value or unknown_processid, and a "
    "detail saying what to do.",
)
SPLIT_HISTORY = ReleaseFile(
    "metadata/split_history.csv",
    "split_history_csv",
    "text/csv",
    "Every record any version so far released, with its split, the last version that released it, its "
    "barcode_key (md5 of its DNA barcode without end Ns) and held_barcode_keys (the keys of barcodes an earlier "
    "version released it with that it carries no more, space-separated): the next version freezes from it, so a "
    "record left out of one version gets its split back when it returns, and its barcodes hold new records to "
    "that split meanwhile.",
)
# Written from earlier stages' outputs, not from the released rows (export.side_files).
SIDE_FILES = (
    BBOX,
    BARCODES_FASTA,
    REJECTS,
    CHANGES,
    SPLIT_SUMMARY,
    RECORDS_LINEAGE,
    RECORDS_LINEAGE_PARQUET,
    BARCODE_QC,
    BARCODE_QC_PARQUET,
    CORRECTION_OUTCOMES,
    BOX_CORRECTION_OUTCOMES,
    SPLIT_HISTORY,
)
# The build's own files the release copies as they are (the statistics stage's folder too, and ``ACCOUNTING``),
# with the name of the file each copies: each is a file of ``provenance.jsonld`` so named, with its sha256 and size
# (the audit holds them to it).
BUILD_COPIES = {
    BARCODES_FASTA: "barcodes.fasta",
    SPLIT_SUMMARY: "summary.csv",
    CORRECTION_OUTCOMES: "corrections.tsv",
    BOX_CORRECTION_OUTCOMES: "box_corrections.tsv",
}
# Every fixed-path file with its own description; other files are described from their suffix.
DESCRIBED = {f.path: f for f in (METADATA_CSV, *SIDE_FILES, PROVENANCE, CONFIG, HDF5)}


def image_relpath(package: str, split: str, chunk: str | None, processid: str) -> str:
    parts = [IMAGES_DIR, package, split] + ([chunk] if chunk else []) + [f"{processid}.jpg"]
    return "/".join(parts)


ZIP_GROUPS = {  # archive group -> the splits it packs
    "pretrain": ("pretrain",),
    "train": ("train",),
    "eval": ("val", "test", "key_unseen", "val_unseen", "test_unseen", "other_heldout"),
}


def zip_name(package: str, group: str, part: str = "") -> str:
    """``BIOSCAN_5M_{package}_{group}[.{part}].zip``, as published."""
    return f"BIOSCAN_5M_{package}_{group}{'.' + part if part else ''}.zip"
