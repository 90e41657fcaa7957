"""``hdf5``: metadata and the ``image_package`` JPEGs in one file (layout.HDF5_PATH), a group per split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bioscan_rebuild.core.params import ExportOptions
from bioscan_rebuild.core.schemas import RANKS, SPLITS
from bioscan_rebuild.export.formats.base import ExportContext, Format
from bioscan_rebuild.export.layout import HDF5_PATH
from bioscan_rebuild.export.spool import IMAGE_KEYS, iter_split, read_derived_image, split_rows

HDF5_LABELS = ("taxon", *RANKS, "dna_bin", "dna_barcode", "chunk")


def write_hdf5(spool: Path, path: Path, store_root: Path, options: ExportOptions, provenance: dict) -> None:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    text = h5py.string_dtype("utf-8")
    blob = h5py.vlen_dtype(np.dtype("uint8"))
    with h5py.File(path, "w", track_order=True) as h5:
        h5.attrs["licence"] = options.licence
        h5.attrs["version"] = options.version
        h5.attrs["name"] = options.name
        h5.attrs["image_package"] = options.image_package
        from bioscan_rebuild import __version__

        h5.attrs["provenance"] = json.dumps(
            {"software": "bioscan-rebuild", "software_version": __version__, **provenance}, sort_keys=True
        )
        for split in SPLITS:
            # every split has its group, empty where it has no records: a reader may open h5[split] for each
            group = h5.create_group(split)
            # a chunk no longer than the split: one of hdf5_batch rows is stored whole (65,536 made 22x the file)
            chunk = (max(1, min(options.hdf5_batch, split_rows(spool, split))),)
            # no timestamps in the object headers: two runs must give identical files
            group.create_dataset("image", (0,), maxshape=(None,), dtype=blob, chunks=chunk, track_times=False)
            group.create_dataset("processid", (0,), maxshape=(None,), dtype=text, chunks=chunk, track_times=False)
            for name in HDF5_LABELS:
                group.create_dataset(name, (0,), maxshape=(None,), dtype=text, chunks=chunk, track_times=False)
            for table in iter_split(spool, split):
                rows = table.select(["processid", "chunk", *IMAGE_KEYS]).to_pylist()
                for start in range(0, len(rows), options.hdf5_batch):
                    batch = rows[start : start + options.hdf5_batch]
                    size = group["processid"].shape[0]
                    end = size + len(batch)
                    for name in ("image", "processid", *HDF5_LABELS):
                        group[name].resize((end,))
                    images = np.empty(len(batch), dtype=object)
                    for k, row in enumerate(batch):
                        data = read_derived_image(store_root, row, options.image_package)
                        images[k] = np.frombuffer(data if data is not None else b"", np.uint8)
                    _write_vlen(group["image"], size, images)
                    group["processid"][size:end] = [r["processid"] for r in batch]
                    part = table.slice(start, len(batch))
                    for name in HDF5_LABELS:
                        values = part[name].to_pylist()
                        group[name][size:end] = ["" if v is None else v for v in values]


def _write_vlen(dataset, start: int, values: np.ndarray) -> None:
    """Write a 1-D object array of uint8 arrays at ``start`` in one call. The low-level write, because
    h5py's slice assignment stacks equal-length arrays into a 2-D array and then refuses it."""
    from h5py import h5s

    file_space = dataset.id.get_space()
    file_space.select_hyperslab((start,), (len(values),))
    dataset.id.write(h5s.create_simple((len(values),)), file_space, values)


def _write(context: ExportContext) -> dict:
    write_hdf5(context.spool, context.root / HDF5_PATH, context.store, context.options, context.provenance)
    return {}


FORMAT = Format("hdf5", _write, needs_images=True)
