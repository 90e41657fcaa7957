# Ingest: BOLD exports and image folders -> sharded record tables, rejects, accounting.


rule parse_export:
    input:
        export=export_of,
    output:
        records=expand(
            "results/ingest/exports/{{batch}}/records/{shard}.parquet", shard=SHARDS
        ),
        rejected_keys=expand(
            "results/ingest/exports/{{batch}}/rejected_keys/{shard}.parquet", shard=SHARDS
        ),
        rejects="results/ingest/exports/{batch}/rejects.parquet",
        summary="results/ingest/exports/{batch}/summary.json",
    log:
        "logs/ingest/parse_export/{batch}.log",
    benchmark:
        "benchmarks/ingest/parse_export/{batch}.tsv"
    conda:
        "../../envs/ingest.yaml"
    params:
        cli=CLI,
        code=CODE["ingest"],
        fingerprint=fingerprint_of(export_of),
        outdir=subpath(output.summary, parent=True),
        ingest=PARSE_PARAMS_JSON,
        shards=len(SHARDS),
    shell:
        "{params.cli} ingest parse {input.export:q} --batch {wildcards.batch} "
        "--shards {params.shards} --outdir {params.outdir:q} "
        "--params {params.ingest:q} > {log} 2>&1"


rule list_images:
    input:
        images=images_of,
    output:
        listing=expand(
            "results/ingest/images/{{batch}}/listing/{group}.parquet",
            group=PHOTO_GROUPS,
        ),
        rejects="results/ingest/images/{batch}/rejects.parquet",
        summary="results/ingest/images/{batch}/summary.json",
    log:
        "logs/ingest/list_images/{batch}.log",
    benchmark:
        "benchmarks/ingest/list_images/{batch}.tsv"
    conda:
        "../../envs/ingest.yaml"
    params:
        cli=CLI,
        code=CODE["ingest"],
        outdir=subpath(output.summary, parent=True),
        ingest=list_params_json,
        files=folder_fingerprint,
        shards=len(SHARDS),
        group_shards=config["photo_job_shards"],
    shell:
        "{params.cli} ingest list {input.images:q} --batch {wildcards.batch} "
        "--shards {params.shards} --group-shards {params.group_shards} --outdir {params.outdir:q} "
        "--params {params.ingest:q} > {log} 2>&1"


rule inventory_images:
    input:
        listing="results/ingest/images/{batch}/listing/{group}.parquet",
    output:
        inventory="results/ingest/images/{batch}/inventory/{group}.parquet",
    log:
        "logs/ingest/inventory_images/{batch}/{group}.log",
    benchmark:
        "benchmarks/ingest/inventory_images/{batch}/{group}.tsv"
    conda:
        "../../envs/ingest.yaml"
    params:
        cli=CLI,
        code=CODE["ingest"],
        store=STORE,
        image_dir=image_dir_args,
        store_mode=config["image_store"]["mode"],
    shell:
        "{params.cli} ingest inventory {input.listing:q} --image-dir {params.image_dir:q} "
        "--store {params.store:q} --store-mode {params.store_mode} "
        "-o {output.inventory:q} > {log} 2>&1"


rule join_shard:
    input:
        unpack(shard_join_inputs),
    output:
        records="results/ingest/shards/{shard}/records.parquet",
        rejects="results/ingest/shards/{shard}/rejects.parquet",
        redeliveries="results/ingest/shards/{shard}/redeliveries.parquet",
        accounting="results/ingest/shards/{shard}/accounting.json",
    log:
        "logs/ingest/join_shard/{shard}.log",
    benchmark:
        "benchmarks/ingest/join_shard/{shard}.tsv"
    conda:
        "../../envs/ingest.yaml"
    params:
        cli=CLI,
        code=CODE["ingest"],
        outdir=subpath(output.accounting, parent=True),
        batch_order=",".join(BATCHES),
        ingest=JOIN_PARAMS_JSON,
        shard_number=shard_number_args,
        # the barcode step's: whether end Ns tell two copies of a record apart
        end_n=(
            "--trim-end-n" if config["barcodes"]["trim_end_n"] else "--no-trim-end-n"
        ),
    shell:
        "{params.cli} ingest join --records {input.records:q} --inventory {input.inventory:q} "
        "--rejected-keys {input.rejected_keys:q} "
        "--batch-order {params.batch_order:q} --outdir {params.outdir:q} {params.shard_number} "
        "--params {params.ingest:q} {params.end_n} > {log} 2>&1"


rule ingest_accounting:
    input:
        parse_summaries=expand(
            "results/ingest/exports/{batch}/summary.json", batch=EXPORT_BATCHES
        ),
        listing_summaries=expand(
            "results/ingest/images/{batch}/summary.json", batch=IMAGE_BATCHES
        ),
        shard_accountings=expand(
            "results/ingest/shards/{shard}/accounting.json", shard=SHARDS
        ),
        rejects=expand(
            "results/ingest/exports/{batch}/rejects.parquet", batch=EXPORT_BATCHES
        )
        + expand("results/ingest/images/{batch}/rejects.parquet", batch=IMAGE_BATCHES)
        + expand("results/ingest/shards/{shard}/rejects.parquet", shard=SHARDS),
    output:
        accounting="results/ingest/accounting.json",
        rejects="results/ingest/rejects.parquet",
    log:
        "logs/ingest/accounting.log",
    benchmark:
        "benchmarks/ingest/accounting.tsv"
    conda:
        "../../envs/ingest.yaml"
    params:
        cli=CLI,
        code=CODE["ingest"],
    shell:
        "{params.cli} ingest accounting --parse-summary {input.parse_summaries:q} "
        "--list-summary {input.listing_summaries:q} "
        "--shard-accounting {input.shard_accountings:q} --rejects {input.rejects:q} "
        "-o {output.accounting:q} --rejects-out {output.rejects:q} > {log} 2>&1"
