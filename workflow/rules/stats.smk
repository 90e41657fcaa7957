# Statistics: the released rows (the release's own spool of curated labels, barcodes, splits and image
# results) -> the tables and figures the BIOSCAN-5M paper documents its data with. The release ships them
# under metadata/stats/ and sums them up in its dataset card; the report shows the figures.


rule stats:
    input:
        curated="results/metadata/curated.parquet",
        barcodes=expand("results/metadata/barcodes/{shard}.parquet", shard=SHARDS),
        splits="results/splits/splits.parquet",
        images=expand("results/images/{shard}/images.parquet", shard=SHARDS),
    output:
        **{
            figure: report(
                f"results/stats/figures/{figure}.png",
                caption=f"../report/stats/{figure}.rst",
                category="Statistics",
                subcategory=subcategory,
            )
            for figure, subcategory in STATS_FIGURES.items()
        },
        summary="results/stats/stats.json",
        tables=expand("results/stats/{table}.csv", table=STATS_TABLES),
        svg=expand("results/stats/figures/{figure}.svg", figure=STATS_FIGURES),
    log:
        "logs/stats/stats.log",
    benchmark:
        "benchmarks/stats/stats.tsv"
    conda:
        "../../envs/images.yaml"
    resources:
        mem_mb=more_each_attempt(4000),  # 5.15M records: 2.49 GB (README, Scale)
    params:
        cli=CLI,
        code=CODE["stats"],
        outdir=subpath(output.summary, parent=True),
        seed=config["stats"]["seed"],
        pairs=config["stats"]["pairs_per_comparison"],
    shell:
        "{params.cli} stats --curated {input.curated:q} --barcodes {input.barcodes:q} "
        "--splits {input.splits:q} --images {input.images:q} --seed {params.seed} --pairs {params.pairs} "
        "-o {params.outdir:q} > {log} 2>&1"
