"""BIN and taxonomy curation: every rule configurable, every change to a field logged (and replayable).

Input: one row per record with ``processid``, the seven ranks, ``dna_bin`` (raw BIN) and ``barcode_key``
(``metadata.barcodes``; null when the barcode was rejected). The steps, in order (``rule`` names in the changes
table in brackets):

1. Names [``normalise``]: Unicode NFKC, look-alike letters (Cyrillic/Greek) -> Latin, invisible format
   characters removed, whitespace trimmed and collapsed; the missing vocabulary (``None``,
   ``not_classified``/``not classified``, ``no_data``/``no data``, ``NA``, ``n/a``, ``n.a.``, ``nan``, ``null``,
   ``-``, empty, whitespace; any case) -> missing; markup, quotes and symbols (emoji) taken off, and above the
   species a bracketed aside, a trailing ``sp.`` and a full stop; a cell with no letter, a number, ``True`` /
   ``False``, a placeholder word alone (``sp.``) or, above the species, several names (``Phoridae;Sciaridae``)
   -> missing; a
   name above species written all upper-case, or above genus all lower-case, gets a capital first letter
   (``DIPTERA``, ``diptera`` -> ``Diptera``; ``MEGASELIA`` -> ``Megaselia``). Species keep their case, and so
   does a lower-case genus unless the data holds it capitalised (``megaselia`` -> ``Megaselia`` when some
   record says ``Megaselia``): case is evidence for placeholder names (published split protocol, rules 2 and 3).
   Ligatures are two letters (``Cœlioxys`` -> ``Coelioxys``), every dash a hyphen, a stray mark goes
   (``aegypti*``, ``Culicidae .``), the hybrid sign ``x`` is ``×``. Then places
   [``place_spelling``, ``metadata.taxonomy.places``]: a country, or a province within its country, written in
   several letter cases (``CANADA``, ``Canada``) is written as most of its records write it in mixed case (else
   as most write it; an abbreviation of up to three letters, ``USA``, counts as mixed case; a tie: the first in
   code-point order), with that spelling's share as the ratio; records that leave (excluded, out of scope) do not
   count. After step 8, the records a maintainer's row gave a place are written as that place is written by the
   others (a moved record's province as its new country's); a place no other record holds keeps their spelling.
2. Species names [``qualifier_dot``, ``species_subgenus``, ``species_author``; ``core.names``]: open-nomenclature
   qualifiers get their dot (``Psathyromyia sp`` -> ``Psathyromyia sp.``, also ``spp``, ``cf``, ``aff``, ``nr``,
   ``near``, ``indet``, ``gr``, ``group``, ``complex``, ``subsp``...), a subgenus inside a species name is taken off
   (``Aedes (Stegomyia) aegypti`` -> ``Aedes aegypti``), then an author citation with its year after it
   (``Chironomus riparius Meigen, 1804``, ``Brumptomyia mesai (Barretto & Coutinho, 1941)`` -> the binomial; a
   qualifier or group word before or in it keeps the whole; without a year nothing goes: a word in brackets or
   capitals may as well be a qualifier or a group). Then the typo / rewording table [``typo_table``]: rank, from,
   to, reason (rank ``*`` = any; the package ships ``metadata/tables/taxonomy_fixes.tsv``), user-extendable; its
   sides are read as steps 1 and 2 write names, and it meets the names so cleaned (as ingest compares copies of a
   record). Then a name
   that cannot be its column's rank becomes missing
   [``rank_misplaced``]: one the data holds at a higher rank (``Insecta`` as an order, ``Noctuidae`` as a
   genus), or a family-group name (``-idae``, ``-inae``, ``-oidea``, ``-ini``) as a genus.
3. BINs [``bin_normalise``, ``bin_malformed``]: case, whitespace and a missing ``BOLD:`` prefix fixed
   (``bold:aaa1234 ``, ``AAA1234`` -> ``BOLD:AAA1234``); anything not ``BOLD:`` + 3 letters + 4 digits ->
   missing.
4. BIN conflicts between identical barcodes [``bin_majority``, ``bin_conflict_dropped``]: see conflicts.
5. Genus from species [``genus_from_species``]: a missing genus is the first word of the species name when
   that word is capitalised Latin (``Coelioxys sp. 1`` -> ``Coelioxys``) and not a family-group or tribe name
   (``-idae``, ``-inae``, ``-oidea``, ``-ini``: ``Cecidomyiidae sp. 3`` fills nothing), a name the data holds
   at a rank above genus (``Diptera sp. 1``, ``Insecta sp. ...``) or a Malaise-trap code (``Malaise trap 4``).
   Then a species name of one word (``Diptera``, ``rufipes``, ``sp.``, a genus alone) names no species: missing
   [``species_one_word``] (a genus alone has given the genus first). Then a species must begin with its genus:
   another genus leaves the species missing [``species_genus_mismatch``] (placeholders, and names not starting
   with a capitalised word, keep their form: they are the published protocol's evidence).
6. Taxonomy conflicts between records sharing a barcode [``barcode_majority``, ``barcode_conflict_dropped``],
   then between records sharing a BIN [``bin_taxon_majority``, ``bin_taxon_conflict_dropped``].
7. Parent ranks [``parent_from_child``]: a missing rank (subfamily up to phylum, deepest first) is filled
   from the nearest labelled lower rank that gives one (genus first, then the ranks above it) when every
   record carrying that child label and a label at the missing rank agrees on one value (the lineage table,
   built from the data itself), unless records sharing its barcode or BIN carry another label at that rank.
8. Record corrections [``correction``]: the patch table (processid, field, value, reason, source), applied
   last; field ``record`` with value ``exclude`` removes the record (rejects, reason ``excluded``). The ranks
   steps 5 and 7 inferred above a corrected rank go with the label they came from
   [``correction_inferred_dropped``] and are inferred again from the corrected labels by steps 5 and 7 themselves
   (their checks included), for those records only. A corrected value meets step 2 (its typo table renames it; a
   name the table deletes, or one that cannot be its rank, is ``invalid_value``) and step 5's checks: a corrected
   species of another genus takes the record's genus off [``correction_genus_dropped``] (step 5 gives it again
   from the species), a corrected genus takes off a species of another genus [``correction_species_dropped``].
   A corrected name (a corrected species without a genus: the genus step 5 reads from it) is held to the lineage
   the other records' own labels give it, as step 7 holds an inference: a label above it that the lineage
   contradicts goes [``correction_parent_dropped``], with the uncorrected ranks between that the lineage puts under
   it, and step 7 gives it again; a label below it that the lineage puts under another name goes, with the
   uncorrected ranks under it [``correction_child_dropped``]. Two corrected ranks are the maintainer's word, even
   against the lineage (a genus moved to another family). Then step 7 runs again on the corrected labels, for every
   record: a fill it made from a lineage a correction changed goes [``correction_lineage_changed``] (every
   Megaselia given Phoridae by the one record whose family was then corrected) and what it gives now is written; a
   corrected label teaches the lineage but is no word of its barcode or BIN group, and a cell a maintainer
   corrected is never filled.
9. Scope [``out_of_scope``]: a record whose final label at ``scope_rank`` is not one of ``scope_taxa``
   (default: phylum Arthropoda, as BIOSCAN-5M) leaves the table (rejects, reason ``out_of_scope``); a record
   without a label there stays, unless (phylum scope) its class is one the shipped ``class_phylum.tsv`` places
   in another phylum.
Records that will leave (a ``record exclude`` correction, or their own label at ``scope_rank`` outside the
scope before any step changed it) take no part in steps 4, 6 and 7: they neither vote nor teach the lineage.
Nor does a label a step-8 row replaces (``corrections.declared_wrong``: the last row for that field of the
record, not refused, with another value than the record holds after step 5) vote in step 6, nor the labels step 8
takes off with it (``_with_implied_abstentions``), nor back a lower label (one wrong species on a barcode would drop
its mates' right one); a BIN a row states is not voted over in step 4, and the record is in that BIN's group in
step 6. Labels step 8 takes off through the lineage check (``correction_parent_dropped``, ``_child_dropped``) still
vote.
Then ``taxon`` = the label at the deepest labelled rank, ``inferred_ranks`` = bit mask of the ranks filled by
steps 5 and 7 (phylum 1, class 2, order 4, family 8, subfamily 16, genus 32, species 64; 0 = none), and
``placeholder_species`` = ``core.novel.novel_mask`` (the split protocol's definition).

Conflicts: within a group (records with one barcode, or one BIN) that holds two or more different labels at
a rank, the most frequent label wins when it is the only most frequent one and its share of the group's
labelled records is >= ``ratio``; records with another label take it. Otherwise that rank and every rank
below it are removed from all records of the group (the changes' ``ratio`` holds the share that fell short).
Ranks are resolved top-down, so a removed rank never comes back below. Missing labels do not vote and are
not filled by this rule; nor does a species that claims none ("Acisoma sp.", "Culex spp.": a genus and "some
species"), which keeps its label beside the group's named species. When every rank has voted, a record whose
label a majority replaced keeps a lower label only if a record of the group that carried the winning label holds
it too; otherwise it is removed
[``..._majority_below``], so no record is left with a lineage its group does not support (a species
"Megaselia sp. 1" under a genus changed to Conicera).

Changes table: one row per changed field: ``step`` (order of application), ``processid``, ``field``, ``old``,
``new`` (null = missing), ``rule``, ``ratio`` (majority share where one decided); an exclusion (step 8 or 9)
is field ``record``, ``kept`` -> ``excluded``. ``replay`` applies it to the input and must give the curated table;
the barcode cleaning itself is described by the QC table instead (the raw sequence stays in the lineage).

Where each step lives: ``names`` (1, 2), ``metadata.bins`` (3: ``normalise_bin``; the BIN table), ``conflicts``
(4, 6), ``parents`` (5, 7), ``corrections`` (8), this module (9), ``changelog`` (the changes table, ``replay``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.core.novel import novel_mask
from bioscan_rebuild.core.params import TaxonomyParams
from bioscan_rebuild.core.schemas import MISSING_TOKENS, RANKS, processid_keys
from bioscan_rebuild.metadata.bins import bin_table, normalise_bin
from bioscan_rebuild.metadata.taxonomy.changelog import ChangeLog, map_unique, set_field, working_columns
from bioscan_rebuild.metadata.taxonomy.conflicts import resolve_conflicts
from bioscan_rebuild.metadata.taxonomy.corrections import (
    apply_corrections,
    declared_wrong,
    excluded_by_corrections,
    names_another_genus,
    record_rows,
)
from bioscan_rebuild.metadata.taxonomy.names import (
    apply_fixes,
    check_species_genus,
    dot_qualifiers,
    drop_misplaced_ranks,
    drop_one_word_species,
    normalise_names,
    strip_authors,
)
from bioscan_rebuild.metadata.taxonomy.parents import (
    RANK_BIT,
    forget_removed,
    genus_from_species,
    infer_parents,
    refill_after_corrections,
)
from bioscan_rebuild.metadata.taxonomy.places import PLACE_FIELDS, unify_place_spelling
from bioscan_rebuild.metadata.taxonomy.tables import class_phylum


def curate(
    records: pd.DataFrame,
    params: TaxonomyParams | None = None,
    fixes: pd.DataFrame | None = None,
    corrections: pd.DataFrame | None = None,
) -> dict:
    """Steps 1-9 on ``records`` (columns: processid, RANKS, dna_bin, barcode_key; extra columns pass through).

    Returns ``curated`` (kept records: input columns curated + taxon, inferred_ranks, placeholder_species),
    ``excluded`` (records removed by corrections, with reason/source), ``changes``, ``bins``, ``lineage``,
    ``corrections`` (outcome per correction row) and ``counts``.
    """
    params = params or TaxonomyParams()
    cols = working_columns(records, (*RANKS, "dna_bin", "barcode_key"))
    log = ChangeLog(cols["processid"])
    inferred = np.zeros(len(cols["processid"]), np.uint8)
    counts: dict = {}
    normalise_names(cols, log)  # 1.
    dot_qualifiers(cols, log)  # 2.: the names' own cleaning, then the table meets them as ingest compares them
    strip_authors(cols, log)
    apply_fixes(cols, log, fixes)
    drop_misplaced_ranks(cols, log)
    counts["bins_malformed"] = _normalise_bins(cols, log)  # 3.
    # records that will leave (a maintainer's exclusion, a label outside the scope) neither vote nor teach the
    # lineage: one mammal label on an insect barcode must not erase the insects' names
    leaving = excluded_by_corrections(cols, corrections) | _outside_by_own_label(cols, params)
    unify_place_spelling(cols, log, ~leaving)  # 1., places: only the records that stay count
    barcode_codes = np.where(leaving, -1, pd.factorize(cols["barcode_key"])[0])
    # a BIN a maintainer's row states is neither voted over nor votes: the record is in that BIN from here on
    row_of = record_rows(cols) if corrections is not None and not corrections.empty else None  # made once
    stated_bins = declared_wrong(cols, corrections, fixes, ("dna_bin",), stated=True, row_of=row_of).get("dna_bin")
    abstain = {} if stated_bins is None else {"dna_bin": stated_bins.index.to_numpy()}
    counts["bin_conflicts"] = resolve_conflicts(  # 4.
        cols, log, barcode_codes, ("dna_bin",), params.bin_barcode_ratio, "bin", cascade=False, abstain=abstain
    )
    if params.fill_genus_from_species:  # 5.
        genus_from_species(cols, log, inferred)
    drop_one_word_species(cols, log)  # after 5: "Megaselia" alone in the species slot still gives the genus
    check_species_genus(cols, log, novel_mask(pd.Series(cols["genus"]), pd.Series(cols["species"])))
    # BINs are final from here on; a record a maintainer moves to another BIN votes in that one
    bins = cols["dna_bin"].copy()
    if stated_bins is not None:
        bins[stated_bins.index.to_numpy()] = stated_bins.to_numpy()
    bin_codes = np.where(leaving, -1, pd.factorize(bins)[0])
    # a label a maintainer's row replaces in step 8 does not vote either (it would outvote or drop its mates'),
    # judged against the labels as the votes meet them (after step 5)
    wrong = declared_wrong(cols, corrections, fixes, fields=RANKS, row_of=row_of)
    abstain = _with_implied_abstentions(cols, wrong, abstain, inferred)
    voted = {rank: cols[rank].copy() for rank in RANKS}  # as the votes meet them: the BIN table's agreement
    counts["barcode_conflicts"] = resolve_conflicts(  # 6.
        cols, log, barcode_codes, RANKS, params.barcode_ratio, "barcode", cascade=True, abstain=abstain
    )
    counts["bin_taxon_conflicts"] = resolve_conflicts(
        cols, log, bin_codes, RANKS, params.bin_ratio, "bin_taxon", cascade=True, abstain=abstain
    )
    forget_removed(cols, inferred)
    lineage = (  # 7.
        infer_parents(cols, log, inferred, (barcode_codes, bin_codes), ~leaving)
        if params.infer_parents
        else pd.DataFrame()
    )
    excluded, outcomes, reinfer, genus_none = apply_corrections(  # 8.
        cols, log, corrections, inferred, ~leaving, fixes, row_of
    )
    changed, confirmed = _corrected_cells(cols, outcomes)
    # the ranks inferred from a corrected label went; a corrected species gives a missing genus, as a source one
    # (never into a genus a maintainer's row says is none, deleting or confirming: it came back from the species; a
    # confirmed genus that correction_genus_dropped took off is given again, from the corrected species)
    again = (reinfer | changed["species"]) & ~genus_none
    if again.any() and params.fill_genus_from_species:
        genus_from_species(cols, log, inferred, only=again)
    if params.infer_parents and any(cells.any() for cells in changed.values()):  # step 7 on the corrected labels
        kept = {rank: changed[rank] | confirmed[rank] for rank in RANKS}
        groups, teaching = (barcode_codes, bin_codes), ~leaving & ~excluded
        lineage = refill_after_corrections(cols, log, inferred, groups, teaching, kept, unheard=changed)
    placed = _place_corrected(cols, outcomes)
    if placed.any():  # a place a maintainer wrote, or a record moved into another country: as its place is written
        unify_place_spelling(cols, log, ~leaving & ~excluded, only=placed)
    out_of_scope, judged_by = _outside_scope(cols, log, params, excluded)  # 9.
    scope = pd.DataFrame({"processid": cols["processid"][out_of_scope], "label": judged_by[out_of_scope]}).assign(
        rank=params.scope_rank
    )
    return _results(cols, log, inferred, excluded, outcomes, lineage, counts, out_of_scope, scope, voted)


def _with_implied_abstentions(cols: dict, wrong: dict, abstain: dict, inferred: np.ndarray) -> dict:
    """Where step 8 will take a label off with the one it replaces, that label does not vote either (it would drop
    its mates' right one): a genus step 5 gave from a replaced species (``correction_inferred_dropped``), the genus
    under a species corrected to one of another genus (``correction_genus_dropped``), a species of another genus
    under a corrected genus (``correction_species_dropped``); by step 8's own rule (``names_another_genus``: a
    placeholder keeps its pair)."""
    extra = {field: [rows] for field, rows in abstain.items()}
    extra.update({field: [*extra.get(field, []), rows.index.to_numpy()] for field, rows in wrong.items()})
    genus_bit = np.uint8(RANK_BIT["genus"])
    for row, value in wrong.get("species", pd.Series(dtype=object)).items():
        genus = cols["genus"][row]
        # an inferred genus goes with the species it came from, unless the new species gives it back
        given_back = value is not None and str(value).split(" ")[0].casefold() == str(genus).casefold()
        if pd.notna(genus) and ((inferred[row] & genus_bit and not given_back) or names_another_genus(genus, value)):
            extra.setdefault("genus", []).append(np.array([row]))
    for row, value in wrong.get("genus", pd.Series(dtype=object)).items():
        if value is not None and names_another_genus(value, cols["species"][row]):
            extra.setdefault("species", []).append(np.array([row]))
    return {field: np.unique(np.concatenate(parts)).astype(np.int64) for field, parts in extra.items()}


def _place_corrected(cols: dict, outcomes: pd.DataFrame) -> np.ndarray:
    """The records a maintainer's row gave a country or province (``applied``)."""
    fields = outcomes["field"].astype(str).str.strip()
    applied = outcomes[(outcomes["outcome"] == "applied") & fields.isin([field for field, _ in PLACE_FIELDS])]
    if applied.empty:
        return np.zeros(len(cols["processid"]), bool)
    keys = pd.Series(processid_keys(cols["processid"]), dtype=object)
    return keys.isin(set(processid_keys(applied["processid"].astype(str)))).to_numpy()


def _corrected_cells(cols: dict, outcomes: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per rank, the records whose label there a maintainer's row gave (``applied``) and confirmed
    (``no_change``). The records' keys are made only when a row decided a rank (millions of records)."""
    fields = outcomes["field"].str.strip()
    decided = outcomes[outcomes["outcome"].isin(["applied", "no_change"]) & fields.isin(RANKS)]
    if decided.empty:
        nothing = {rank: np.zeros(len(cols["processid"]), bool) for rank in RANKS}
        return nothing, nothing
    keys = pd.Series(processid_keys(cols["processid"]), dtype=object)
    targets = pd.Series(processid_keys(decided["processid"].astype(str)), index=decided.index)
    cells = []
    for outcome in ("applied", "no_change"):
        chosen = decided[decided["outcome"] == outcome]
        at = {rank: set(targets[chosen.index[fields[chosen.index] == rank]]) for rank in RANKS}
        cells.append({rank: keys.isin(at[rank]).to_numpy() for rank in RANKS})
    return cells[0], cells[1]


def _scope_labels(cols: dict, params: TaxonomyParams) -> tuple[np.ndarray, np.ndarray]:
    """Per record, its label at ``scope_rank`` (for a phylum scope, a blank phylum is the one the shipped
    ``class_phylum.tsv`` gives its class) and how it was judged by."""
    if params.scope_rank not in RANKS:
        raise ValueError(f"taxonomy.scope_rank must be one of {RANKS}, not {params.scope_rank!r}")
    judged_by = np.asarray(cols[params.scope_rank], dtype=object).copy()
    labels = judged_by.copy()
    if params.scope_rank == "phylum":
        blank = np.flatnonzero(pd.isna(labels) & ~pd.isna(cols["class"]))
        reference = class_phylum()
        for row in blank:  # records without a phylum: few
            phylum = reference.get(cols["class"][row])
            if phylum is not None:
                labels[row] = phylum
                judged_by[row] = f"{phylum} (from its class {cols['class'][row]})"
    return labels, judged_by


def _outside_by_own_label(cols: dict, params: TaxonomyParams) -> np.ndarray:
    """The records whose own label (before any vote or inference) is outside the scope."""
    if not params.scope_taxa:
        return np.zeros(len(cols["processid"]), bool)
    labels, _ = _scope_labels(cols, params)
    return ~pd.isna(labels) & ~pd.Series(labels, dtype=object).isin(params.scope_taxa).to_numpy()


def _outside_scope(
    cols: dict, log: ChangeLog, params: TaxonomyParams, excluded: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step 9 [``out_of_scope``]: records whose final label at ``scope_rank`` is not one of ``scope_taxa`` (an
    insect dataset takes no mammals) leave the table; a record without that label stays (unknown is not out),
    except, for a phylum scope, one whose class the shipped ``class_phylum.tsv`` places in another phylum (a
    mammal with its phylum left blank). Returns the mask and, per record, the label it was judged by."""
    if not params.scope_taxa:
        judged_by = np.asarray(cols[params.scope_rank], dtype=object).copy() if params.scope_rank in cols else None
        return np.zeros(len(cols["processid"]), bool), judged_by
    labels, judged_by = _scope_labels(cols, params)
    labelled = ~pd.isna(labels) & ~excluded
    outside = labelled & ~pd.Series(labels, dtype=object).isin(params.scope_taxa).to_numpy()
    # every record out (none unlabelled at the rank stays either): a typo, not a dataset of nothing
    if outside.any() and outside.sum() == (~excluded).sum():
        top = pd.Series(labels[labelled], dtype=object).value_counts().head(5)
        found = ", ".join(f"{name} ({n})" for name, n in top.items())
        raise InputError(
            f"taxonomy.scope_taxa {list(params.scope_taxa)} matches none of the records' {params.scope_rank} labels "
            f"(matched exactly; most common: {found}): fix taxonomy.scope_taxa"
        )
    rows = np.flatnonzero(outside)
    log.record("out_of_scope", "record", rows, ["kept"] * len(rows), ["excluded"] * len(rows))
    return outside, judged_by


def _normalise_bins(cols: dict, log: ChangeLog) -> int:
    """Step 3 [``bin_malformed``, ``bin_normalise``]. Returns how many BINs were malformed."""
    raw_bins = cols["dna_bin"]
    bins = map_unique(raw_bins, normalise_bin)
    malformed = (
        ~pd.isna(raw_bins)
        & pd.isna(bins)
        & ~map_unique(raw_bins, lambda v: v is None or str(v).strip().lower() in MISSING_TOKENS).astype(bool)
    )
    set_field(cols, log, "bin_malformed", "dna_bin", np.flatnonzero(malformed), None)
    set_field(cols, log, "bin_normalise", "dna_bin", np.flatnonzero(~malformed), bins[~malformed])
    return int(malformed.sum())


def deepest_label(cols: dict) -> np.ndarray:
    taxon = np.full(len(cols["processid"]), None, dtype=object)
    for rank in RANKS:
        values = cols[rank]
        present = ~pd.isna(values)
        taxon[present] = values[present]
    return taxon


def _results(cols, log, inferred, excluded, outcomes, lineage, counts, out_of_scope, scope, voted) -> dict:
    """The derived columns, the kept and excluded records, the tables and the counts (see ``curate``); ``voted``:
    the rank columns as step 6's votes met them."""
    processids = cols["processid"]
    cols["taxon"] = deepest_label(cols)
    cols["inferred_ranks"] = inferred
    cols["placeholder_species"] = novel_mask(
        pd.Series(cols["genus"], dtype=object), pd.Series(cols["species"], dtype=object)
    )
    kept = ~excluded & ~out_of_scope
    voted = pd.DataFrame({"dna_bin": cols["dna_bin"][kept], **{rank: voted.pop(rank)[kept] for rank in RANKS}})
    frame = pd.DataFrame({column: cols.pop(column)[kept] for column in list(cols)})  # pop: one copy at a time
    excluded_frame = pd.DataFrame({"processid": processids[excluded]})
    if excluded.any():
        # the row may spell the processid otherwise (case, invisible characters): found by key, as it was applied
        reasons = outcomes[outcomes["outcome"] == "excluded"]
        reasons = reasons.assign(key=processid_keys(reasons["processid"])).drop_duplicates("key").set_index("key")
        keys = processid_keys(excluded_frame["processid"])
        excluded_frame["reason"] = reasons["reason"].reindex(keys).to_numpy()
        excluded_frame["source"] = reasons["source"].reindex(keys).to_numpy()
    changes = log.table()
    counts.update(
        records=len(processids),
        kept=int(kept.sum()),
        excluded=int(excluded.sum()),
        out_of_scope=int(out_of_scope.sum()),
        changes=len(changes),
        changes_by_rule={k: int(v) for k, v in changes["rule"].value_counts().sort_index().items()},
        inferred_records=int((inferred > 0).sum()),
        lineage_conflicts=int((lineage["parents"] > 1).sum()) if len(lineage) else 0,
    )
    return {
        "curated": frame,
        "excluded": excluded_frame.reset_index(drop=True),
        "out_of_scope": scope.reset_index(drop=True),
        "changes": changes,
        "bins": bin_table(frame, voted),
        "lineage": lineage,
        "corrections": outcomes,
        "counts": counts,
    }
