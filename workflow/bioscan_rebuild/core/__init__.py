"""Contracts every stage shares: schemas and constants, table/JSON I/O, the image store layout, stage parameters."""
