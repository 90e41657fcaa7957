"""Specimen detection: the Detector interface (base), the backends (classical, yolo/), the registry that builds them
by name, and scoring against hand-drawn boxes (evaluate)."""
