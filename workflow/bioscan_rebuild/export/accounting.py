"""The run's accounting, end to end: every input record row and photo file is released or rejected by one stage.

Ingest balances its own inputs (``ingest.accounting``: lines and files in = kept + rejected). From there each
stage hands on a set of records, and this module follows them by processid:

    ingest kept -> images (every record gets a status, none is dropped) -> metadata (curated + its rejects)
                -> splits (split + excluded) -> released

A stage balances when what came in is exactly what it kept plus what it rejected, with no record in both or
missing; a photo travels with its record, so a record dropped by a later stage takes its photo with it (counted
under that stage and reason). The run fails, naming the stage and the processids, when any of this does not hold.
The release step checks its own row count against ``released`` before it publishes.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bioscan_rebuild.core.errors import AccountingError, InputError
from bioscan_rebuild.core.io import read_json, write_json

STAGES = ("ingest", "images", "metadata", "splits")


def _column(paths, names) -> pa.Table:
    tables = [pq.read_table(p, columns=names) for p in paths]
    return pa.concat_tables(tables) if tables else pa.table({n: pa.array([], pa.string()) for n in names})


def _processids(table: pa.Table, what: str) -> set[str]:
    ids = table["processid"].to_pylist()
    seen = set(ids)
    if len(seen) != len(ids):
        twice = sorted(pid for pid, n in Counter(ids).items() if n > 1)
        raise AccountingError(f"{what}: processids listed more than once: {_few(twice)}")
    return seen


def _few(ids, limit: int = 5) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _by_reason(rejects: pa.Table) -> dict[str, str]:
    """processid -> reason of a stage's record rejects."""
    records = rejects.filter(pc.equal(rejects["kind"], "record"))
    return dict(zip(records["processid"].to_pylist(), records["reason"].to_pylist()))


def _stage(name, came_in: set, kept: set, rejected: dict[str, str], with_photo: set) -> dict:
    """One stage's balance for records and the photos that travel with them; raises where it does not hold."""
    problems = []
    both = kept & rejected.keys()
    if both:
        problems.append(f"{len(both)} both kept and rejected ({_few(both)})")
    lost = came_in - kept - rejected.keys()
    if lost:
        problems.append(f"{len(lost)} came in but were neither kept nor rejected ({_few(lost)})")
    appeared = (kept | rejected.keys()) - came_in
    if appeared:
        problems.append(f"{len(appeared)} kept or rejected without coming in ({_few(appeared)})")
    if problems:
        raise AccountingError(f"{name} stage does not balance: " + "; ".join(problems))
    record_reasons = Counter(rejected.values())
    photo_reasons = Counter(reason for pid, reason in rejected.items() if pid in with_photo)
    return {
        "records": {"in": len(came_in), "out": len(kept), "rejected": dict(sorted(record_reasons.items()))},
        "images": {
            "in": len(came_in & with_photo),
            "out": len(kept & with_photo),
            "rejected": dict(sorted(photo_reasons.items())),
        },
    }


def account_run(*, ingest_accounting, records, images, curated, metadata_rejects, splits, split_excluded) -> dict:
    """The end-to-end accounting of one run (see the module docstring). Raises AccountingError where it fails."""
    ingest = read_json(
        ingest_accounting, "ingest's accounting", ("inputs", "kept", "batches", "shards", "rejects_by_reason")
    )
    if not isinstance(ingest["kept"], dict) or not {"records", "images"} <= set(ingest["kept"]):
        raise InputError(f"{ingest_accounting}: not ingest's accounting (its 'kept' names no records and images)")
    ingested = _column(records, ["processid", "image_path"])
    kept = _processids(ingested, "ingest")
    with_photo = set(ingested.filter(pc.is_valid(ingested["image_path"]))["processid"].to_pylist())
    if len(kept) != ingest["kept"]["records"] or len(with_photo) != ingest["kept"]["images"]:
        raise AccountingError(
            f"ingest: its accounting says {ingest['kept']['records']} records and {ingest['kept']['images']} photos "
            f"kept, but its record tables hold {len(kept)} records and {len(with_photo)} photos"
        )
    statuses = _column(images, ["processid", "image_status"])
    # A record without a photo (ingest.require_images: false) passes the image stage as it came.
    after_images = _processids(statuses, "images") | (kept - with_photo)
    after_metadata = _processids(pq.read_table(curated, columns=["processid"]), "metadata")
    released = _processids(pq.read_table(splits, columns=["processid"]), "splits")
    stages = {
        "ingest": {
            "records": {
                "in": ingest["inputs"]["records"],
                "out": len(kept),
                "rejected": ingest["rejects_by_reason"]["record"],
            },
            "images": {
                "in": ingest["inputs"]["images"],
                "out": len(with_photo),
                "rejected": ingest["rejects_by_reason"]["image"],
            },
        },
        "images": _stage("images", kept, after_images, {}, with_photo),
        "metadata": _stage(
            "metadata", after_images, after_metadata, _by_reason(pq.read_table(metadata_rejects)), with_photo
        ),
        "splits": _stage("splits", after_metadata, released, _by_reason(pq.read_table(split_excluded)), with_photo),
    }
    stages["images"]["status"] = dict(sorted(Counter(statuses["image_status"].to_pylist()).items()))
    rejected = {
        what: sum(sum(stages[stage][what]["rejected"].values()) for stage in STAGES) for what in ("records", "images")
    }
    summary = {
        "inputs": dict(ingest["inputs"]),
        "released": {"records": len(released), "images": len(released & with_photo)},
        "rejected": rejected,
        "stages": stages,
        "stage_order": list(STAGES),
        "batches": ingest["batches"],
        "blank_lines": ingest["blank_lines"],
        "shards": ingest["shards"],
        "warnings": ingest.get("warnings", []),  # an ingest accounting of an earlier version has none
    }
    problems = [
        f"{what}: {summary['inputs'][what]} inputs != {summary['released'][what]} released + {rejected[what]} rejected"
        for what in ("records", "images")
        if summary["inputs"][what] != summary["released"][what] + rejected[what]
    ]
    if problems:
        raise AccountingError("; ".join(problems))
    if summary["inputs"]["records"] and not summary["released"]["records"]:
        raise _nothing_released(summary)
    summary["balanced"] = True
    return dict(sorted(summary.items()))


# reject reason -> the config key that most often makes every record take it (a name matched exactly)
_LIKELY_KEY = {"unsupported_marker": "ingest.markers", "out_of_scope": "taxonomy.scope_taxa"}


def _nothing_released(summary: dict) -> InputError:
    """Every record rejected: the release would be empty, which is never what a run is for. Names the reasons."""
    reasons = Counter()
    for stage in summary["stages"].values():
        reasons.update(stage["records"]["rejected"])
    said = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common(4))
    top = reasons.most_common(1)[0][0] if reasons else None
    hint = f": check {_LIKELY_KEY[top]} (names are matched exactly)" if top in _LIKELY_KEY else ""
    return InputError(f"no record is released: all {summary['inputs']['records']} were rejected ({said}){hint}")


def write_run_accounting(output, **inputs) -> dict:
    summary = account_run(**inputs)
    write_json(summary, output)
    return summary


def check_released(accounting: dict, released_records: int) -> None:
    """The release step's own check: the rows it wrote are the records the accounting says are released."""
    expected = accounting.get("released", {}).get("records")
    if expected != released_records:
        raise AccountingError(
            f"the release holds {released_records} records but the run's accounting says {expected} are released"
        )
