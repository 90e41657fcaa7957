# Metadata: barcode cleaning per shard, then BINs + taxonomy over the whole table (conflicts span shards).


rule clean_barcodes:
    input:
        records="results/ingest/shards/{shard}/records.parquet",
    output:
        barcodes="results/metadata/barcodes/{shard}.parquet",
    log:
        "logs/metadata/clean_barcodes/{shard}.log",
    benchmark:
        "benchmarks/metadata/clean_barcodes/{shard}.tsv"
    conda:
        "../../envs/ingest.yaml"
    params:
        cli=CLI,
        min_length=config["barcodes"]["min_length"],
        max_ambiguity=config["barcodes"]["max_ambiguity"],
        trim="--trim-end-n" if config["barcodes"]["trim_end_n"] else "--no-trim-end-n",
    shell:
        "{params.cli} barcodes clean {input.records:q} -o {output.barcodes:q} "
        "--min-length {params.min_length} --max-ambiguity {params.max_ambiguity} {params.trim} > {log} 2>&1"


rule curate_taxonomy:
    input:
        records=expand("results/ingest/shards/{shard}/records.parquet", shard=SHARDS),
        barcodes=expand("results/metadata/barcodes/{shard}.parquet", shard=SHARDS),
        tables=taxonomy_tables,
    output:
        curated="results/metadata/curated.parquet",
        changes="results/metadata/changes.parquet",
        bins="results/metadata/bins.parquet",
        lineage="results/metadata/lineage.parquet",
        corrections="results/metadata/corrections.tsv",
        rejects="results/metadata/rejects.parquet",
        summary="results/metadata/summary.json",
    log:
        "logs/metadata/curate_taxonomy.log",
    benchmark:
        "benchmarks/metadata/curate_taxonomy.tsv"
    conda:
        "../../envs/ingest.yaml"
    resources:
        mem_mb=8000,
    params:
        cli=CLI,
        outdir=subpath(output.summary, parent=True),
        taxonomy_params=TAXONOMY_PARAMS_JSON,
        tables=taxonomy_table_args,
    shell:
        "{params.cli} taxonomy curate --records {input.records:q} --barcodes {input.barcodes:q} "
        "--outdir {params.outdir:q} --taxonomy-params {params.taxonomy_params:q} {params.tables} > {log} 2>&1"


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
        mem_mb=8000,
    params:
        cli=CLI,
        outdir=subpath(output.splits, parent=True),
        freeze=split_freeze_arg,
    shell:
        "{params.cli} splits --curated {input.curated:q} --barcodes {input.barcodes:q} "
        "--images {input.images:q} {params.freeze} --outdir {params.outdir:q} > {log} 2>&1"


rule barcode_fasta:
    input:
        curated="results/metadata/curated.parquet",
        splits="results/splits/splits.parquet",
        barcodes=expand("results/metadata/barcodes/{shard}.parquet", shard=SHARDS),
    output:
        fasta="results/metadata/barcodes.fasta",
    log:
        "logs/metadata/barcode_fasta.log",
    conda:
        "../../envs/ingest.yaml"
    params:
        cli=CLI,
    shell:
        "{params.cli} barcodes fasta --curated {input.curated:q} --splits {input.splits:q} "
        "--barcodes {input.barcodes:q} -o {output.fasta:q} > {log} 2>&1"
