"""bioscan-rebuild: rebuild a BIOSCAN-5M-style dataset release from BOLD exports and imager photos."""

# Bumped with any change to what the release's descriptive files say (the card, croissant.json, the JSON-LD
# heads): `audit` makes them again only for a release its own version built.
__version__ = "0.2.10"
