"""Ingest stage: BOLD exports + image folders -> sharded record tables, rejects, accounting.

Work is split so that it scales to millions of records with a bounded number of jobs (the rules
in `workflow/rules/ingest.smk`, one CLI step each):

1. ``parse.parse_to_shards`` (one job per export): parse, reject unparseable/unkeyed/other-marker
   rows, write the records into a fixed number of shards keyed by md5(processid).
2. ``inventory.list_to_shards`` (one job per image folder), then ``inventory.inventory_shard``
   (per folder and shard): map file names to processids, hash and inspect every photo.
3. ``join.join_shard_files`` (one job per shard, across all batches): resolve duplicate records
   and images, join each record to its photo, and reject everything that cannot be joined.
4. ``accounting.write_accounting`` (one job): sums the per-shard and per-batch counts and fails
   unless every input record row and every image file is either kept or rejected with a reason.

``local.ingest_local`` runs the same steps in one process. Because a processid always lands in
the same shard, duplicates across batches meet in one job.
"""
