# Splits: curated labels + cleaned barcodes -> the split of every record (photos without a specimen
# get none); the published protocol, or a frozen rebuild when splits.freeze names a previous release.


rule assign_splits:
    input:
        curated="results/metadata/curated.parquet",
        barcodes=expand("results/metadata/barcodes/{shard}.parquet", shard=SHARDS),
        freeze=split_freeze,
        images=expand("results/images/{shard}/images.parquet", shard=SHARDS),
    output:
        splits="results/splits/splits.parquet",
        excluded="results/splits/excluded.parquet",
        summary=report(
            "results/splits/summary.csv",
            caption="../report/splits.rst",
            category="Splits",
        ),
    log:
        "logs/splits/assign_splits.log",
    benchmark:
        "benchmarks/splits/assign_splits.tsv"
    conda:
        "../../envs/ingest.yaml"
    resources:
        mem_mb=more_each_attempt(8000),
    params:
        cli=CLI,
        code=CODE["splits"],
        fingerprint=fingerprint_of(split_freeze),
        outdir=subpath(output.splits, parent=True),
        freeze=split_freeze_arg,
        tie_order=config["splits"]["tie_order"],
    shell:
        "{params.cli} splits --curated {input.curated:q} --barcodes {input.barcodes:q} "
        "--images {input.images:q} {params.freeze} --tie-order {params.tie_order} --outdir {params.outdir:q} "
        "> {log} 2>&1"
