# Release: the run's accounting over every stage, then the BIOSCAN-5M layout and every download format,
# with a manifest of their hashes.


rule accounting:
    input:
        ingest_accounting="results/ingest/accounting.json",
        records=expand("results/ingest/shards/{shard}/records.parquet", shard=SHARDS),
        images=expand("results/images/{shard}/images.parquet", shard=SHARDS),
        curated="results/metadata/curated.parquet",
        metadata_rejects="results/metadata/rejects.parquet",
        splits="results/splits/splits.parquet",
        split_excluded="results/splits/excluded.parquet",
    output:
        accounting=report(
            "results/accounting.json",
            caption="../report/accounting.rst",
            category="Accounting",
        ),
    log:
        "logs/release/accounting.log",
    benchmark:
        "benchmarks/release/accounting.tsv"
    conda:
        "../../envs/ingest.yaml"
    resources:
        mem_mb=more_each_attempt(4000),  # 5.15M records: 2.78 GB (README, Scale)
    params:
        cli=CLI,
        code=CODE["export"],
    shell:
        "{params.cli} accounting --ingest-accounting {input.ingest_accounting:q} "
        "--records {input.records:q} --images {input.images:q} --curated {input.curated:q} "
        "--metadata-rejects {input.metadata_rejects:q} --splits {input.splits:q} "
        "--split-excluded {input.split_excluded:q} -o {output.accounting:q} > {log} 2>&1"


rule release:
    input:
        # the config's sources: a delivery gone after a run must stop a release target too (only `all` asked for
        # them: the release was rebuilt from that delivery's old outputs, with a truncated provenance graph)
        sources=missing_sources(),
        curated="results/metadata/curated.parquet",
        barcodes=expand("results/metadata/barcodes/{shard}.parquet", shard=SHARDS),
        splits="results/splits/splits.parquet",
        split_summary="results/splits/summary.csv",
        records=expand("results/ingest/shards/{shard}/records.parquet", shard=SHARDS),
        images=expand("results/images/{shard}/images.parquet", shard=SHARDS),
        bbox=expand("results/images/{shard}/bbox.tsv", shard=SHARDS),
        rejects=[
            "results/ingest/rejects.parquet",
            "results/metadata/rejects.parquet",
            "results/splits/excluded.parquet",
        ],
        changes="results/metadata/changes.parquet",
        corrections="results/metadata/corrections.tsv",
        box_corrections="results/images/box_corrections.tsv",
        fasta="results/metadata/barcodes.fasta",
        accounting="results/accounting.json",
        provenance="results/provenance/provenance.jsonld",
        config="results/provenance/config.json",
        stats="results/stats/stats.json",
        previous=previous_release,
        frozen=frozen_table,
    output:
        # the receipt, outside the release: Snakemake deletes a job's outputs before it runs and after it fails,
        # so the release's own files as outputs left the previous release without them when a rerun failed
        receipt=report(
            RELEASE_RECEIPT,
            caption="../report/release.rst",
            category="Release",
        ),
    log:
        "logs/release/release.log",
    benchmark:
        "benchmarks/release/release.tsv"
    conda:
        "../../envs/images.yaml"
    resources:
        mem_mb=more_each_attempt(8000),  # 5.15M records: 4.82 GB (README, Scale)
    params:
        cli=CLI,
        code=CODE["export"],
        fingerprint=fingerprint_of(previous_release),
        frozen_fingerprint=fingerprint_of(frozen_table),
        store=STORE,
        outdir=lambda wildcards, output: os.path.splitext(output.receipt)[0],  # results/release
        stats=subpath(input.stats, parent=True),
        formats=",".join(config["export"]["formats"]),
        options=EXPORT_OPTIONS_JSON,
        previous=previous_release_arg,
        frozen=frozen_table_arg,
    shell:
        "{params.cli} release --curated {input.curated:q} --barcodes {input.barcodes:q} "
        "--splits {input.splits:q} --split-summary {input.split_summary:q} --records {input.records:q} "
        "--images {input.images:q} --bbox {input.bbox:q} --rejects {input.rejects:q} "
        "--changes {input.changes:q} --corrections {input.corrections:q} --box-corrections {input.box_corrections:q} "
        "--fasta {input.fasta:q} --accounting {input.accounting:q} "
        "--provenance-file {input.provenance:q} --config-file {input.config:q} "
        "--store {params.store:q} --formats {params.formats} --options {params.options:q} {params.previous} {params.frozen} "
        "--stats {params.stats:q} "
        "--outdir {params.outdir:q} --receipt {output.receipt:q} > {log} 2>&1"


rule audit:
    input:
        receipt=RELEASE_RECEIPT,
        # with release.previous: the diff is made again from that release and compared with the released one
        previous=previous_release,
    output:
        audit=report(
            "results/audit/audit.json",
            caption="../report/audit.rst",
            category="Release",
        ),
    log:
        "logs/release/audit.log",
    benchmark:
        "benchmarks/release/audit.tsv"
    conda:
        "../../envs/images.yaml"
    resources:
        # 5.15M records (a 4 GB CSV): 13.8 GB (README, Scale); the sample's fits any node
        mem_mb=audit_mem_mb,
    params:
        cli=CLI,
        code=CODE["export"],
        release=lambda wildcards, input: os.path.splitext(input.receipt)[0],
        previous=previous_release_arg,
        fingerprint=fingerprint_of(previous_release),
    shell:
        "{params.cli} audit {params.release:q} {params.previous} --json {output.audit:q} > {log} 2>&1"
