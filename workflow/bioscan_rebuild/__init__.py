"""bioscan-rebuild: rebuild a BIOSCAN-5M-style dataset release from BOLD exports and imager photos."""

__version__ = "0.1.0"
