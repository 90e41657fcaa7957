# Release: the files users download, with a manifest of their hashes.


rule release:
    input:
        records=expand("results/ingest/shards/{shard}/records.parquet", shard=SHARDS),
        rejects="results/ingest/rejects.parquet",
        accounting="results/accounting.json",
        bbox=expand("results/images/{shard}/bbox.tsv", shard=SHARDS),
        image_summary="results/images/summary.json",
    output:
        manifest="results/release/MANIFEST.json",
        records="results/release/metadata/records.csv",
        rejects="results/release/metadata/rejects.csv",
        accounting="results/release/accounting.json",
    log:
        "logs/release/release.log",
    benchmark:
        "benchmarks/release/release.tsv"
    conda:
        "../../envs/images.yaml"
    params:
        cli=CLI,
        outdir=subpath(output.manifest, parent=True),
    shell:
        "{params.cli} release --records {input.records:q} --rejects {input.rejects:q} "
        "--accounting {input.accounting:q} --bbox {input.bbox:q} "
        "--image-summary {input.image_summary:q} --outdir {params.outdir:q} > {log} 2>&1"
