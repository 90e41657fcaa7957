"""The image stage: decode, detect, crop, the four image packages and size fields, per shard of ingested records."""
