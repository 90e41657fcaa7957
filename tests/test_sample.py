"""The sample generator: label shares, interim names of undescribed species, and a sample that fills every split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bioscan_rebuild.core.novel import novel_mask
from bioscan_rebuild.core.schemas import SPLITS
from bioscan_rebuild.splits.local import metadata_from_exports
from bioscan_rebuild.synth.exports import SPECIES_SHARE, generate_metadata, generate_sample


def test_species_share_is_the_fraction_identified_to_species():
    for share in (SPECIES_SHARE, 0.5):
        species = generate_metadata(20_000, seed=3, species_share=share)["species"]
        assert abs(np.mean([s is not None for s in species]) - share) < 0.02


def test_undescribed_species_carry_one_interim_name_in_a_described_genus():
    col = generate_metadata(20_000, seed=3, species_share=0.5)
    table = pd.DataFrame({"genus": col["genus"], "species": col["species"]}).dropna()
    novel = novel_mask(table["genus"], table["species"])
    interim = table["species"].str.contains("Malaise|BIOUG")
    assert interim.any() and novel[interim.to_numpy()].all()
    described_genera = set(table.loc[~novel, "genus"])
    per_name = table[interim].groupby("species")["genus"].agg(["nunique", "first", "size"])
    assert (per_name["nunique"] == 1).all()  # one name, one genus, on every record
    assert set(per_name["first"]) <= described_genera
    assert per_name["size"].max() >= 8  # enough records to become an unseen species


def test_metadata_only_sample_fills_all_eight_splits(tmp_path):
    generate_sample(tmp_path / "sample", n_records=300, seed=0, images=False)
    exports = sorted((tmp_path / "sample").glob("*/*.tsv"))
    metadata_from_exports(exports, tmp_path / "out.csv", split=True)
    counts = pd.read_csv(tmp_path / "out.csv")["split"].value_counts()
    assert set(counts.index) == set(SPLITS)


def test_generated_barcodes_evolved_down_the_tree():
    """Every BIN's sequence used to be drawn on its own: BINs of one species were as far apart as BINs of two
    orders (Mash d = 1), so the sample could not show, or test, the genetics statistics. Now sister BINs are a
    few % apart, congeneric ones more, other orders unrelated."""
    from bioscan_rebuild.stats.genetics import kmer_set, mash_distance

    col = generate_metadata(3000, seed=0)
    first = {}  # BIN -> (species, genus, order, k-mers of its first record's barcode, unvaried)
    for i, bin_uri in enumerate(col["bin_uri"]):
        if bin_uri is not None and col["species"][i] is not None and bin_uri not in first:
            read = col["nucleotides"][i].strip("-")
            first[bin_uri] = (col["species"][i], col["genus"][i], col["order"][i], kmer_set(read))
    bins = list(first.values())
    levels = {"species": [], "genus": [], "orders": []}
    for a in range(len(bins)):
        for b in range(a + 1, len(bins)):
            (s1, g1, o1, k1), (s2, g2, o2, k2) = bins[a], bins[b]
            level = "species" if s1 == s2 else "genus" if g1 == g2 else "orders" if o1 != o2 else None
            if level and len(levels[level]) < 200:
                levels[level].append(mash_distance(k1, k2))
    median = {level: float(np.median(d)) for level, d in levels.items()}
    assert all(len(d) >= 10 for d in levels.values()), {k: len(v) for k, v in levels.items()}
    assert 0.01 < median["species"] < 0.1 < median["genus"] < 0.4 and median["orders"] > 0.9, median


def test_a_sample_written_again_into_its_folder_replaces_the_last_one(tmp_path):
    """Written again with fewer records, the sample left the last one's photos beside its own: photos of
    processids no export or fault list names. It replaces its own files; a folder with anything else is refused."""
    import pytest

    from bioscan_rebuild.core.errors import InputError

    folder = tmp_path / "sample"
    generate_sample(folder, n_records=40, seed=1)
    generate_sample(folder, n_records=12, seed=2)
    fresh = tmp_path / "fresh"
    generate_sample(fresh, n_records=12, seed=2)

    def files(root):
        return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}

    assert files(folder) == files(fresh)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds notes.txt, not a sample's files"):
        generate_sample(folder, n_records=12, seed=3)
    assert (folder / "notes.txt").read_text() == "mine" and files(folder).keys() == files(fresh).keys() | {"notes.txt"}
