# bioscan-rebuild: rebuild a BIOSCAN-5M-style release from BOLD exports and imager photos.
# Stages: ingest -> images -> barcodes + BINs -> taxonomy -> splits -> export.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


# YAML reads an unquoted 2024-01-05 as a date; the schema checks its ISO text.
for _batch in config.get("batches") or []:
    if isinstance(_batch, dict) and hasattr(_batch.get("delivered"), "isoformat"):
        _batch["delivered"] = _batch["delivered"].isoformat()


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    batch=BATCH_PATTERN,
    shard=r"shard-\d{3,4}",
    group=r"shards?-\d{3,4}(-\d{3,4})?",


include: "workflow/rules/ingest.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/metadata.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/detector.smk"
include: "workflow/rules/release.smk"
include: "workflow/rules/provenance.smk"


onsuccess:
    print_run_warnings()


rule all:
    default_target: True
    input:
        missing_sources(),
        "results/accounting.json",
        "results/images/summary.json",
        "results/metadata/summary.json",
        "results/metadata/barcodes.fasta",
        "results/splits/splits.parquet",
        RELEASE_RECEIPT,
        "results/audit/audit.json",
