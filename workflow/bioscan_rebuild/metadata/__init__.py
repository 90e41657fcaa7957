"""Barcodes (cleaning + QC), BINs and taxonomy curation (taxonomy/), and the workflow's per-rule steps (stage)."""
