"""The sample generator: synthetic BOLD exports (``exports.py``) and imager photos (``photos.py``)
with known ground truth and planted faults, for `bioscan-rebuild sample`, the tests and the
benchmarks. Test data only: the command line uses it, no workflow stage imports it.
"""

# Light constants the command line offers as choices and defaults (it does not import the generator to parse
# its arguments: every workflow job starts the same command).
LAYOUTS = ("v4", "bcdm2023", "bcdm2024")  # the BOLD export layouts the generator writes
# Processids are {ID_PREFIX}{number}-{suffix}, numbers drawn from [ID_OFFSET, ID_OFFSET + 3 n).
ID_PREFIX, ID_OFFSET = "BSCN", 1000
