"""BIN and taxonomy curation: every rule configurable, every change to a field logged (and replayable).

Input: one row per record with ``processid``, the seven ranks, ``dna_bin`` (raw BIN) and ``barcode_key``
(``barcodes.py``; null when the barcode was rejected). The steps, in order (``rule`` names in the changes
table in brackets):

1. Names [``normalise``]: Unicode NFKC, look-alike letters (Cyrillic/Greek) -> Latin, invisible format
   characters removed, whitespace trimmed and collapsed; the missing vocabulary (``None``,
   ``not_classified``/``not classified``, ``no_data``/``no data``, ``NA``, ``n/a``, ``n.a.``, ``nan``, ``null``,
   ``-``, empty, whitespace; any case) -> missing; a
   name above species written all upper-case, or above genus all lower-case, gets a capital first letter
   (``DIPTERA``, ``diptera`` -> ``Diptera``; ``MEGASELIA`` -> ``Megaselia``). Species keep their case, and so
   does a lower-case genus unless the data holds it capitalised (``megaselia`` -> ``Megaselia`` when some
   record says ``Megaselia``): case is evidence for placeholder names (splits spec rules 2 and 3).
2. Typo / rewording table [``typo_table``]: ``resources/taxonomy_fixes.tsv`` (rank, from, to, reason; rank
   ``*`` = any), user-extendable; applied to the normalised names.
3. BINs [``bin_normalise``, ``bin_malformed``]: case, whitespace and a missing ``BOLD:`` prefix fixed
   (``bold:aaa1234 ``, ``AAA1234`` -> ``BOLD:AAA1234``); anything not ``BOLD:`` + 3 letters + 4 digits ->
   missing.
4. BIN conflicts between identical barcodes [``bin_majority``, ``bin_conflict_dropped``]: see conflicts.
5. Genus from species [``genus_from_species``]: a missing genus is the first word of the species name when
   that word is capitalised Latin (``Coelioxys sp. 1`` -> ``Coelioxys``) and not a family-group name
   (``-idae``, ``-inae``, ``-oidea``: ``Cecidomyiidae sp. 3`` fills nothing) or a Malaise-trap code
   (``Malaise trap 4`` fills nothing).
6. Taxonomy conflicts between records sharing a barcode [``barcode_majority``, ``barcode_conflict_dropped``],
   then between records sharing a BIN [``bin_taxon_majority``, ``bin_taxon_conflict_dropped``].
7. Parent ranks [``parent_from_child``]: a missing rank (subfamily up to phylum, deepest first) is filled
   from the nearest labelled lower rank (genus first) when every record carrying that child label and a
   label at the missing rank agrees on one value (the lineage table, built from the data itself), unless
   records sharing its barcode or BIN carry another label at that rank.
8. Record corrections [``correction``]: the patch table (processid, field, value, reason, source), applied
   last; field ``record`` with value ``exclude`` removes the record (rejects, reason ``excluded``).
Then ``taxon`` = the label at the deepest labelled rank, ``inferred_ranks`` = bit mask of the ranks filled by
steps 5 and 7 (phylum 1, class 2, order 4, family 8, subfamily 16, genus 32, species 64; 0 = none), and
``placeholder_species`` = ``novel.novel_mask`` (the split protocol's definition).

Conflicts: within a group (records with one barcode, or one BIN) that holds two or more different labels at
a rank, the most frequent label wins when it is the only most frequent one and its share of the group's
labelled records is >= ``ratio``; records with another label take it. Otherwise that rank and every rank
below it are removed from all records of the group (the changes' ``ratio`` holds the share that fell short).
Ranks are resolved top-down, so a removed rank never comes back below. Missing labels do not vote and are
not filled by this rule. When every rank has voted, a record whose label a majority replaced keeps a lower
label only if a record of the group that carried the winning label holds it too; otherwise it is removed
[``..._majority_below``], so no record is left with a lineage its group does not support (a species
"Megaselia sp. 1" under a genus changed to Conicera).

Changes table: one row per changed field: ``step`` (order of application), ``processid``, ``field``, ``old``,
``new`` (null = missing), ``rule``, ``ratio`` (majority share where one decided); an exclusion is field
``record``, ``kept`` -> ``excluded``. ``replay`` applies it to the
input and must give the curated table; the barcode cleaning itself is described by the QC table instead
(the raw sequence stays in the lineage).
"""

from __future__ import annotations

import re
import unicodedata
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from bioscan_rebuild.core.novel import MALAISE_RE
from bioscan_rebuild.core.params import TaxonomyParams
from bioscan_rebuild.core.schemas import RANKS

MISSING_TOKENS = frozenset(
    {"", "none", "not_classified", "not classified", "no_data", "no data", "na", "n/a", "n.a.", "nan", "null", "-"}
)
BIN_PATTERN = re.compile(r"^(?:BOLD:?)?([A-Z]{3}[0-9]{4})$")
BINOMIAL_GENUS = re.compile(r"^([A-Z][a-z]+)(?:\s|$)")
HIGHER_RANK_SUFFIX = r"(?:idae|inae|oidea)$"  # family, subfamily, superfamily endings
RANK_BIT = {rank: 1 << i for i, rank in enumerate(RANKS)}
CORRECTABLE_FIELDS = (*RANKS, "dna_bin", "country", "province_state")
CORRECTION_COLUMNS = ("processid", "field", "value", "reason", "source")
CORRECTION_REASONS = ("wrong_label", "wrong_bin", "no_insect", "multiple_insects", "bad_crop", "duplicate", "other")
CHANGE_COLUMNS = ("step", "processid", "field", "old", "new", "rule", "ratio")

# Latin look-alikes seen in pasted names (Cyrillic and Greek letters render identically).
_CONFUSABLES = str.maketrans(
    "АВЕКМНОРСТХаеорсухіјѕԁΑΒΕΖΗΙΚΜΝΟΡΤΥΧοντ",
    "ABEKMHOPCTXaeopcyxijsdABEZHIKMNOPTYXovt",
)


def normalise_name(value: str | None, rank: str) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = unicodedata.normalize("NFKC", str(value)).translate(_CONFUSABLES)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = " ".join(text.split())
    if text.lower() in MISSING_TOKENS:
        return None
    # a lower-case genus is evidence of a placeholder (splits spec rule 3): only upper case is fixed there
    if rank != "species" and text.isalpha() and (text.isupper() or (text.islower() and rank != "genus")):
        text = text.capitalize()
    return text


def normalise_bin(value: str | None) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = "".join(unicodedata.normalize("NFKC", str(value)).translate(_CONFUSABLES).split()).upper()
    if text.lower() in MISSING_TOKENS:
        return None
    match = BIN_PATTERN.match(text)
    return f"BOLD:{match.group(1)}" if match else None


SHIPPED_TABLES = ("taxonomy_fixes.tsv", "corrections.tsv")


def shipped_table(name: str) -> Path:
    """A table shipped as package data (``metadata/tables/``), so a wheel carries it as a checkout does."""
    if name not in SHIPPED_TABLES:
        raise ValueError(f"no shipped table {name!r} (known: {', '.join(SHIPPED_TABLES)})")
    return Path(str(resources.files(__package__) / "tables" / name))


def _read_table(path, columns) -> pd.DataFrame:
    """A maintainer's TSV: lines starting with ``#`` are comments (a ``#`` inside a value is kept)."""
    import io

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such table")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if not line.startswith("#")]
    table = pd.read_csv(io.StringIO("".join(lines)), sep="\t", dtype=str, keep_default_na=False)
    missing = set(columns) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return table[list(columns)]


def load_fixes(path: str | Path | None) -> pd.DataFrame:
    """The typo / rewording table: rank, from, to, reason (TSV, ``#`` comment lines)."""
    columns = ["rank", "from", "to", "reason"]
    if not path:
        return pd.DataFrame(columns=columns)
    table = _read_table(path, columns)
    bad = set(table["rank"]) - {*RANKS, "*"}
    if bad:
        raise ValueError(f"{path}: unknown ranks {sorted(bad)}")
    return table


def load_corrections(path: str | Path | None) -> pd.DataFrame:
    if not path:
        return pd.DataFrame(columns=list(CORRECTION_COLUMNS))
    return _read_table(path, CORRECTION_COLUMNS)


class ChangeLog:
    """Collects changes as arrays per step (vectorised), so millions of changes cost little."""

    def __init__(self, processids: np.ndarray):
        self.processids = processids
        self.parts: list[pd.DataFrame] = []
        self.step = 0

    def record(self, rule: str, field: str, rows: np.ndarray, old, new, ratio=None) -> None:
        """Log rows whose value changes (``old`` != ``new``, missing-aware) as one step."""
        old = np.asarray(old, dtype=object)
        new = np.asarray(new, dtype=object)
        old_missing, new_missing = pd.isna(old), pd.isna(new)
        changed = (old_missing != new_missing) | (~old_missing & ~new_missing & (old != new))
        if not changed.any():
            return
        self.step += 1
        ratios = np.full(len(rows), np.nan) if ratio is None else np.broadcast_to(np.asarray(ratio, float), len(rows))
        self.parts.append(
            pd.DataFrame(
                {
                    "step": self.step,
                    "processid": self.processids[rows[changed]],
                    "field": field,
                    "old": np.where(old_missing, None, old)[changed],
                    "new": np.where(new_missing, None, new)[changed],
                    "rule": rule,
                    "ratio": np.round(ratios[changed], 4),
                }
            )
        )

    def table(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({c: pd.Series(dtype="float64" if c == "ratio" else object) for c in CHANGE_COLUMNS})
        out = pd.concat(self.parts, ignore_index=True)
        out["step"] = out["step"].astype("int64")
        return out


def _map_unique(values: np.ndarray, function) -> np.ndarray:
    """Apply ``function`` once per distinct value (names repeat a lot: 5M records, ~30k names)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.array([function(u) for u in uniques] + [function(None)], dtype=object)
    return mapped[codes]  # code -1 (missing) -> the last entry


def _shared(values) -> np.ndarray:
    """Object array of ``values`` (missing -> None) in which equal values are one object."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.empty(len(uniques) + 1, dtype=object)
    table[:-1] = np.asarray(uniques, dtype=object)
    return table[codes]


def _set(cols: dict, log: ChangeLog, rule: str, field: str, rows: np.ndarray, new, ratio=None) -> None:
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return
    values = cols[field]
    new = np.broadcast_to(np.asarray(new, dtype=object), len(rows))
    log.record(rule, field, rows, values[rows], new, ratio)
    values[rows] = new
    cols[field] = values


def _resolve_conflicts(cols, log, key_codes, fields, ratio: float, rules: tuple[str, str], cascade: bool) -> dict:
    """Majority-or-drop within groups (``key_codes``: factorized barcode or BIN, -1 = none) for each of
    ``fields`` in order (see module doc). ``cascade``: a dropped field also drops every later field for the
    group's records."""
    has_key = key_codes >= 0
    counts = {"groups_majority": 0, "groups_dropped": 0}
    changed_at: dict[str, np.ndarray] = {}
    for position, field in enumerate(fields):
        labels = cols[field]
        voting = np.flatnonzero(has_key & ~pd.isna(labels))
        if not len(voting):
            continue
        label_codes, label_values = pd.factorize(labels[voting])
        pairs = pd.DataFrame({"g": key_codes[voting], "l": label_codes})
        sizes = pairs.value_counts(sort=False).rename("n").reset_index()
        per_group = sizes.groupby("g")["n"]
        distinct = per_group.transform("size").to_numpy()
        sizes = sizes[distinct > 1]
        if sizes.empty:
            continue
        per_group = sizes.groupby("g")["n"]
        total = per_group.transform("sum").to_numpy()
        at_top = sizes["n"].to_numpy() == per_group.transform("max").to_numpy()
        n_top = pd.Series(at_top.astype(np.int64)).groupby(sizes["g"].to_numpy()).transform("sum").to_numpy()
        wins = at_top & (n_top == 1) & (sizes["n"].to_numpy() / total >= ratio)
        decided = pd.Series(sizes["l"].to_numpy()[wins], index=sizes["g"].to_numpy()[wins])
        share = pd.Series(sizes["n"].to_numpy()[wins] / total[wins], index=decided.index)
        conflicted = np.unique(sizes["g"].to_numpy())
        dropped = np.setdiff1d(conflicted, decided.index.to_numpy())
        counts["groups_majority"] += len(decided)
        counts["groups_dropped"] += len(dropped)
        # majority: voting records of a decided group with another label take the winner
        group_of_vote = key_codes[voting]
        win = decided.reindex(group_of_vote).to_numpy()
        change = ~np.isnan(win) & (label_codes != np.nan_to_num(win, nan=-1))
        rows = voting[change]
        _set(
            cols,
            log,
            rules[0],
            field,
            rows,
            label_values[win[change].astype(np.int64)],
            share.reindex(group_of_vote[change]).to_numpy(),
        )
        changed_at[field] = rows
        # drop: every record of an undecided group loses this field (and the later ones when cascading);
        # the ratio column holds the top label's share that fell short
        top_share = (per_group.transform("max").to_numpy() / total)[~wins]
        short = pd.Series(top_share, index=sizes["g"].to_numpy()[~wins]).groupby(level=0).first()
        rows = np.flatnonzero(has_key & np.isin(key_codes, dropped))
        for later in fields[position:] if cascade else (field,):
            _set(cols, log, rules[1], later, rows, None, short.reindex(key_codes[rows]).to_numpy())
    if cascade:  # after every rank has voted: lower labels the group does not back go
        for position, field in enumerate(fields):
            if field in changed_at:
                _drop_unsupported_below(
                    cols, log, key_codes, has_key, field, fields[position + 1 :], changed_at[field], rules[0]
                )
    return counts


def _drop_unsupported_below(cols, log, key_codes, has_key, field, lower_fields, changed, rule) -> None:
    """Records whose ``field`` a majority replaced keep a lower-rank label only when a record of the same
    group that already carried the winning label holds it too (a genus "Megaselia" is not kept under a family
    changed to Phoridae unless the group's Phoridae records say Megaselia); otherwise it is removed
    [``{rule}_below``], so a majority change never leaves a lineage the group does not support."""
    if not len(changed) or not lower_fields:
        return
    groups = np.unique(key_codes[changed])
    in_groups = has_key & np.isin(key_codes, groups) & ~pd.isna(cols[field])
    in_groups[changed] = False
    supporters = np.flatnonzero(in_groups)
    for lower in lower_fields:
        values = cols[lower]
        held = changed[~pd.isna(values[changed])]
        if not len(held):
            continue
        backed = supporters[~pd.isna(values[supporters])]
        known = pd.MultiIndex.from_arrays([key_codes[backed], values[backed].astype(object)])
        asked = pd.MultiIndex.from_arrays([key_codes[held], values[held].astype(object)])
        _set(cols, log, f"{rule}_below", lower, held[~asked.isin(known)], None)


_CONFLICT = "\x00conflict"  # a group whose records carry two labels at the rank: nothing agrees with it


def _capitalise_known_genera(cols: dict, log: ChangeLog) -> None:
    """A lower-case one-word genus (``megaselia``) is written as the genus the data already knows (``Megaselia``)
    when there is one; otherwise it stays, as evidence of a placeholder (splits spec rule 3)."""
    genus = cols["genus"]
    names = pd.Series(pd.unique(genus[~pd.isna(genus)]), dtype=object)
    lower = names[names.str.isalpha() & names.str.islower()]
    known = set(names) & set(lower.str.capitalize())
    mapping = {name: name.capitalize() for name in lower if name.capitalize() in known}
    if mapping:
        rows = np.flatnonzero(pd.Series(genus, dtype=object).isin(list(mapping)).to_numpy())
        _set(cols, log, "normalise", "genus", rows, [mapping[v] for v in genus[rows]])


def _distinct_per_group(codes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For group codes (>= 0) and their values (not missing): each group, one of its values, and how many
    distinct values it holds."""
    value_codes, uniques = pd.factorize(values)
    width = len(uniques) + 1
    pairs = np.unique(codes.astype(np.int64) * width + value_codes)
    groups, first, count = np.unique(pairs // width, return_index=True, return_counts=True)
    return groups, np.asarray(uniques, dtype=object)[pairs[first] % width], count


def _group_labels(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per group code: the one label its records carry at a rank, None if none, ``_CONFLICT`` if several (a
    barcode mate outside the BIN can keep its own label). The last slot answers code -1 (no group)."""
    held = np.full(codes.max(initial=-1) + 2, None, dtype=object)
    rows = np.flatnonzero((codes >= 0) & ~pd.isna(labels))
    if len(rows):
        groups, one, count = _distinct_per_group(codes[rows], labels[rows])
        held[groups] = np.where(count == 1, one, _CONFLICT)
    return held


def _agreeing_fills(group_held, rows: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """Which guesses may be written: none that differs from what the record's barcode or BIN group already
    holds, and none in a group that would receive two different guesses in this pass."""
    found = ~pd.isna(guess)
    for codes, held in group_held:
        theirs = held[codes[rows]]
        found &= pd.isna(theirs) | (theirs == guess)
    for codes, _ in group_held:
        at = np.flatnonzero(found & (codes[rows] >= 0))
        if len(at):
            groups, _, count = _distinct_per_group(codes[rows[at]], guess[at])
            found[at[np.isin(codes[rows[at]], groups[count > 1])]] = False
    return found


def _remember_fills(group_held, rows: np.ndarray, values: np.ndarray) -> None:
    for codes, held in group_held:
        at = codes[rows]
        empty = (at >= 0) & pd.isna(held[at])
        held[at[empty]] = values[empty]


def _infer_parents(cols: dict, log: ChangeLog, inferred: np.ndarray, group_codes) -> pd.DataFrame:
    """Step 7. Returns the lineage table (child -> parent links and whether they are consistent).
    ``group_codes``: the factorized barcode and BIN keys, whose groups no inference may contradict."""
    links = []
    for parent_index in range(RANKS.index("subfamily"), -1, -1):
        parent = RANKS[parent_index]
        children = RANKS[parent_index + 1 : RANKS.index("genus") + 1]
        parent_values = cols[parent]
        missing_parent = pd.isna(parent_values)
        # what records sharing a barcode / a BIN already say at this rank: no inference may contradict it
        group_held = [(codes, _group_labels(codes, parent_values)) for codes in group_codes]
        for child in reversed(children):  # the nearest labelled lower rank decides: genus first
            child_values = cols[child]
            both = ~missing_parent & ~pd.isna(child_values)
            pairs = pd.DataFrame({"child": child_values[both], "parent": parent_values[both]})
            distinct = pairs.groupby("child")["parent"].agg(["nunique", "first", "size"])
            links.append(
                pd.DataFrame(
                    {
                        "child_rank": child,
                        "child": distinct.index,
                        "parent_rank": parent,
                        "parent": np.where(distinct["nunique"] == 1, distinct["first"], None),
                        "parents": distinct["nunique"].to_numpy(),
                        "records": distinct["size"].to_numpy(),
                    }
                )
            )
            consistent = distinct.loc[distinct["nunique"] == 1, "first"]
            # only records whose nearer lower ranks are all missing use this child
            nearer = [r for r in children if RANKS.index(r) > RANKS.index(child)]
            use = pd.isna(cols[parent]) & ~pd.isna(child_values)
            for r in nearer:
                use &= pd.isna(cols[r])
            rows = np.flatnonzero(use)
            guess = consistent.reindex(child_values[rows]).to_numpy(dtype=object)
            found = _agreeing_fills(group_held, rows, guess)
            if found.any():
                _set(cols, log, "parent_from_child", parent, rows[found], guess[found])
                inferred[rows[found]] |= RANK_BIT[parent]
                _remember_fills(group_held, rows[found], guess[found])
    return pd.concat(links, ignore_index=True) if links else pd.DataFrame()


def _apply_corrections(cols, log, corrections: pd.DataFrame, inferred: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """Step 8. Returns (bool mask of excluded rows, per-correction outcome table). A corrected rank is a
    maintainer's label, not an inference: its bit leaves ``inferred``."""
    row_of = pd.Series(np.arange(len(cols["processid"])), index=cols["processid"])
    excluded = np.zeros(len(cols["processid"]), bool)
    outcomes = []
    for item in corrections.itertuples(index=False):  # a maintainer's table: hundreds of rows, not millions
        row = row_of.get(item.processid.strip())
        value = item.value.strip() or None
        if value is not None and item.field in RANKS:  # a maintainer's value gets the names' own cleaning
            value = normalise_name(value, item.field)
        if row is None:
            outcome = "unknown_processid"
        elif item.field == "record":
            if (value or "").lower() == "exclude":
                excluded[row] = True
                log.record("correction", "record", np.array([row]), ["kept"], ["excluded"])
                outcome = "excluded"
            else:
                outcome = "invalid_value"
        elif item.field not in CORRECTABLE_FIELDS:
            outcome = "unknown_field"
        elif item.field == "dna_bin" and value is not None and normalise_bin(value) is None:
            outcome = "invalid_value"
        else:
            if item.field == "dna_bin" and value is not None:
                value = normalise_bin(value)
            old = cols[item.field][row]
            if (pd.isna(old) and value is None) or old == value:
                outcome = "no_change"
            else:
                _set(cols, log, "correction", item.field, np.array([row]), value)
                if item.field in RANK_BIT:
                    inferred[row] &= np.uint8(~RANK_BIT[item.field] & 0xFF)
                outcome = "applied"
        outcomes.append({**item._asdict(), "outcome": outcome})
    return excluded, pd.DataFrame(outcomes, columns=[*CORRECTION_COLUMNS, "outcome"])


def deepest_label(cols: dict) -> np.ndarray:
    taxon = np.full(len(cols["processid"]), None, dtype=object)
    for rank in RANKS:
        values = cols[rank]
        present = ~pd.isna(values)
        taxon[present] = values[present]
    return taxon


def bin_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per BIN: records, distinct barcodes, and per rank the consensus label with its agreement ratio
    (share of the BIN's records labelled at that rank that carry it; ties -> the first in name order)."""
    has_bin = frame.loc[~pd.isna(frame["dna_bin"]), ["processid", "dna_bin", "barcode_key", *RANKS]]
    out = has_bin.groupby("dna_bin").agg(records=("processid", "size"), barcodes=("barcode_key", "nunique"))
    for rank in RANKS:
        labelled = has_bin.loc[~pd.isna(has_bin[rank]), ["dna_bin", rank]]
        counts = labelled.groupby(["dna_bin", rank]).size().rename("n").reset_index()
        counts = counts.sort_values(["dna_bin", "n", rank], ascending=[True, False, True], kind="stable")
        top = counts.drop_duplicates("dna_bin").set_index("dna_bin")
        total = counts.groupby("dna_bin")["n"].sum()
        out[rank] = top[rank].reindex(out.index)
        out[f"{rank}_agreement"] = (top["n"] / total).reindex(out.index).round(4)
    return out.reset_index()


def curate(
    records: pd.DataFrame,
    params: TaxonomyParams | None = None,
    fixes: pd.DataFrame | None = None,
    corrections: pd.DataFrame | None = None,
) -> dict:
    """Steps 1-8 on ``records`` (columns: processid, RANKS, dna_bin, barcode_key; extra columns pass through).

    Returns ``curated`` (kept records: input columns curated + taxon, inferred_ranks, placeholder_species),
    ``excluded`` (records removed by corrections, with reason/source), ``changes``, ``bins``, ``lineage``,
    ``corrections`` (outcome per correction row) and ``counts``.
    """
    from bioscan_rebuild.core.novel import novel_mask

    params = params or TaxonomyParams()
    # Plain numpy columns while curating: pandas would re-encode object arrays on every write. Equal names share
    # one Python object (5M records carry ~30k distinct names; a str object per cell cost gigabytes).
    n = len(records)
    cols = {
        column: records[column].to_numpy(copy=True)
        if records[column].dtype.kind in "fiub"
        else _shared(records[column])
        for column in records.columns
    }
    for column in (*RANKS, "dna_bin", "barcode_key"):
        if column not in cols:
            cols[column] = np.full(n, None, object)
    processids = cols["processid"]
    log = ChangeLog(processids)
    everyone = np.arange(len(cols["processid"]))
    counts: dict = {}

    for rank in RANKS:  # 1. names
        values = cols[rank]
        _set(cols, log, "normalise", rank, everyone, _map_unique(values, lambda v, r=rank: normalise_name(v, r)))
    _capitalise_known_genera(cols, log)
    fixes = fixes if fixes is not None else pd.DataFrame(columns=["rank", "from", "to", "reason"])
    for rank in RANKS:  # 2. typo table
        table = fixes[(fixes["rank"] == rank) | (fixes["rank"] == "*")]
        if table.empty:
            continue
        # rows for any rank first, so a row for this rank wins over them
        table = pd.concat([table[table["rank"] == "*"], table[table["rank"] == rank]])
        mapping = dict(zip(table["from"], table["to"]))
        values = cols[rank]
        rows = np.flatnonzero(pd.Series(values).isin(list(mapping)).to_numpy())
        _set(cols, log, "typo_table", rank, rows, [mapping[v] or None for v in values[rows]])

    raw_bins = cols["dna_bin"]  # 3. BINs
    bins = _map_unique(raw_bins, normalise_bin)
    malformed = (
        ~pd.isna(raw_bins)
        & pd.isna(bins)
        & ~_map_unique(raw_bins, lambda v: v is None or str(v).strip().lower() in MISSING_TOKENS).astype(bool)
    )
    _set(cols, log, "bin_malformed", "dna_bin", np.flatnonzero(malformed), None)
    _set(cols, log, "bin_normalise", "dna_bin", np.flatnonzero(~malformed), bins[~malformed])
    counts["bins_malformed"] = int(malformed.sum())

    barcode_codes = pd.factorize(cols["barcode_key"])[0]
    counts["bin_conflicts"] = _resolve_conflicts(  # 4.
        cols,
        log,
        barcode_codes,
        ("dna_bin",),
        params.bin_barcode_ratio,
        ("bin_majority", "bin_conflict_dropped"),
        False,
    )
    inferred = np.zeros(len(cols["processid"]), np.uint8)
    if params.fill_genus_from_species:  # 5.
        species = cols["species"]
        rows = np.flatnonzero(pd.isna(cols["genus"]) & ~pd.isna(species))
        first = (
            pd.Series(species[rows], dtype=object).str.extract(BINOMIAL_GENUS.pattern, expand=False).to_numpy(object)
        )
        # a family/subfamily/tribe name in the species slot ("Cecidomyiidae sp. 3") is not a genus, nor is a
        # trap code ("Malaise trap 4")
        words = pd.Series(first, dtype=object)
        higher = words.str.contains(HIGHER_RANK_SUFFIX, na=False).to_numpy()
        code = words.str.contains(MALAISE_RE, na=False).to_numpy()
        found = ~pd.isna(first) & ~higher & ~code
        _set(cols, log, "genus_from_species", "genus", rows[found], first[found])
        inferred[rows[found]] |= RANK_BIT["genus"]
    bin_codes = pd.factorize(cols["dna_bin"])[0]  # BINs are final from here on
    counts["barcode_conflicts"] = _resolve_conflicts(  # 6.
        cols, log, barcode_codes, RANKS, params.barcode_ratio, ("barcode_majority", "barcode_conflict_dropped"), True
    )
    counts["bin_taxon_conflicts"] = _resolve_conflicts(
        cols, log, bin_codes, RANKS, params.bin_ratio, ("bin_taxon_majority", "bin_taxon_conflict_dropped"), True
    )
    # a rank removed by a conflict is no longer inferred
    for rank in RANKS:
        inferred[pd.isna(cols[rank])] &= np.uint8(~RANK_BIT[rank] & 0xFF)
    lineage = (  # 7.
        _infer_parents(cols, log, inferred, (barcode_codes, bin_codes)) if params.infer_parents else pd.DataFrame()
    )
    corrections = corrections if corrections is not None else pd.DataFrame(columns=list(CORRECTION_COLUMNS))
    excluded, outcomes = _apply_corrections(cols, log, corrections, inferred)  # 8.
    cols["taxon"] = deepest_label(cols)
    cols["inferred_ranks"] = inferred
    cols["placeholder_species"] = novel_mask(
        pd.Series(cols["genus"], dtype=object), pd.Series(cols["species"], dtype=object)
    )
    kept = ~excluded
    frame = pd.DataFrame({column: cols.pop(column)[kept] for column in list(cols)})  # pop: one copy at a time
    excluded_frame = pd.DataFrame({"processid": processids[excluded]})
    if excluded.any():
        reasons = outcomes[outcomes["outcome"] == "excluded"].drop_duplicates("processid").set_index("processid")
        excluded_frame["reason"] = reasons["reason"].reindex(excluded_frame["processid"]).to_numpy()
        excluded_frame["source"] = reasons["source"].reindex(excluded_frame["processid"]).to_numpy()
    changes = log.table()
    counts.update(
        records=len(processids),
        kept=int((~excluded).sum()),
        excluded=int(excluded.sum()),
        changes=len(changes),
        changes_by_rule={k: int(v) for k, v in changes["rule"].value_counts().sort_index().items()},
        inferred_records=int((inferred > 0).sum()),
        lineage_conflicts=int((lineage["parents"] > 1).sum()) if len(lineage) else 0,
    )
    return {
        "curated": frame,
        "excluded": excluded_frame.reset_index(drop=True),
        "changes": changes,
        "bins": bin_table(frame),
        "lineage": lineage,
        "corrections": outcomes,
        "counts": counts,
    }


def replay(records: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """Apply a changes table to the input records, step by step, checking each ``old`` value on the way.
    Returns the fields as curated (before taxon/inferred_ranks, which are derived from them)."""
    frame = records.reset_index(drop=True).copy()
    row_of = pd.Series(np.arange(len(frame)), index=frame["processid"].to_numpy())
    excluded = np.zeros(len(frame), bool)
    for (_, field), part in changes.groupby(["step", "field"], sort=True):
        rows = row_of.reindex(part["processid"].to_numpy()).to_numpy()
        if field == "record":  # a maintainer's exclusion: the record leaves the table
            excluded[rows[part["new"].to_numpy(dtype=object) == "excluded"]] = True
            continue
        values = frame[field].to_numpy(dtype=object).copy()
        current = values[rows]
        old = part["old"].to_numpy(dtype=object)
        same = (pd.isna(current) & pd.isna(old)) | (current == old)
        if not same.all():
            first = int(np.flatnonzero(~same)[0])
            raise ValueError(
                f"replay: {field} of {part['processid'].iloc[first]} is {current[first]!r}, log says {old[first]!r}"
            )
        values[rows] = part["new"].to_numpy(dtype=object)
        frame[field] = values
    return frame[~excluded].reset_index(drop=True)
