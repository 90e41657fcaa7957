"""The sample generator: synthetic BOLD exports (``exports.py``) and imager photos (``photos.py``)
with known ground truth and planted faults, for `bioscan-rebuild sample`, the tests and the
benchmarks. Test data only: the command line uses it, no workflow stage imports it.
"""
