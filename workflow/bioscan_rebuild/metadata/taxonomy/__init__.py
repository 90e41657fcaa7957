"""BIN and taxonomy curation. The rules are the docstring of ``curate`` (this package's ``curate`` module).

- ``curate``: ``curate()``, the steps in order, and the docstring that documents them.
- ``names``: names' normal form (step 1) and the typo / rewording table (step 2).
- ``conflicts``: majority-or-drop within records sharing a barcode or a BIN (steps 4 and 6).
- ``parents``: genus from species (step 5), parent ranks (step 7), the ``inferred_ranks`` bits.
- ``corrections``: the record corrections table (step 8).
- ``changelog``: the working columns, how a field is written and logged, and ``replay`` of the changes table.
- ``tables``: the maintainers' TSV tables, and those shipped as package data in ``metadata/tables/``.

BIN identifiers (step 3, the BIN table) are ``metadata.bins``.
"""
