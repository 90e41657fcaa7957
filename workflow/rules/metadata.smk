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
        code=CODE["barcodes"],
        barcode_params=BARCODE_PARAMS_JSON,
    shell:
        "{params.cli} barcodes clean {input.records:q} -o {output.barcodes:q} "
        "--params {params.barcode_params:q} > {log} 2>&1"


rule curate_taxonomy:
    input:
        records=expand("results/ingest/shards/{shard}/records.parquet", shard=SHARDS),
        barcodes=expand("results/metadata/barcodes/{shard}.parquet", shard=SHARDS),
        redeliveries=expand(
            "results/ingest/shards/{shard}/redeliveries.parquet", shard=SHARDS
        ),
        # the records ingest refused: a correction naming one says so, not unknown_processid
        ingest_rejects=expand(
            "results/ingest/exports/{batch}/rejects.parquet", batch=EXPORT_BATCHES
        )
        + expand("results/ingest/shards/{shard}/rejects.parquet", shard=SHARDS),
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
        mem_mb=more_each_attempt(8000),
    params:
        cli=CLI,
        code=CODE["metadata"],
        rows=taxonomy_table_rows,  # the tables' rows, not their comments or times
        outdir=subpath(output.summary, parent=True),
        taxonomy_params=TAXONOMY_PARAMS_JSON,
        tables=taxonomy_table_args,
    shell:
        "{params.cli} taxonomy curate --records {input.records:q} --barcodes {input.barcodes:q} "
        "--redeliveries {input.redeliveries:q} --ingest-rejects {input.ingest_rejects:q} "
        "--outdir {params.outdir:q} --taxonomy-params {params.taxonomy_params:q} --no-shipped-tables {params.tables} "
        "> {log} 2>&1"


rule barcode_fasta:
    input:
        curated="results/metadata/curated.parquet",
        splits="results/splits/splits.parquet",
        barcodes=expand("results/metadata/barcodes/{shard}.parquet", shard=SHARDS),
    output:
        fasta="results/metadata/barcodes.fasta",
    log:
        "logs/metadata/barcode_fasta.log",
    benchmark:
        "benchmarks/metadata/barcode_fasta.tsv"
    resources:
        mem_mb=more_each_attempt(4000),  # 4.98M records: 2.96 GB (README, Scale)
    conda:
        "../../envs/ingest.yaml"
    params:
        cli=CLI,
        code=CODE["metadata"],
    shell:
        "{params.cli} barcodes fasta --curated {input.curated:q} --splits {input.splits:q} "
        "--barcodes {input.barcodes:q} -o {output.fasta:q} > {log} 2>&1"
