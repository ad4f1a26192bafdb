import Foundation
import CLI

let usage = """
usage: embedps-admin <command> --cluster SPEC.json [options] [--json]

commands:
  status                         shards, slots, tables, rows, bytes, cache, rates, latency
  health                         SERVING / not serving per shard (exit 1 when any is down)
  table list                     table names
  table describe NAME            per-shard rows, cache, dirty rows, log and disk bytes, request counts
  table create NAME --dim N [--optimizer sgd|adagrad|adam|ftrl] [--lr X] [--init zeros|uniform|normal]
                    [--low X --high X | --mean X --stddev X] [--seed N] [--hash collision-free|fixed-budget]
                    [--row-budget H] [--hash-seed N] [--initial-accumulator X] [--l1 X] [--l2 X]
                    [--semantic unigram|ngram|prefix|spm --rows N --levels L --codes K [--ngram N]
                     [--spm-model PATH]]   a semantic-ID table of N piece rows
                    [--density D [--regrow-interval P] [--regrow-rounds R] [--growth-decay X]]
                                 a dynamic-sparsity table: D of each row's entries active
                    [--dnis-blocks S [--dnis-block-sizes N1,N2,...] [--alpha-lr X]]
                                 a DNIS mixed-dimension table with S frequency blocks
  dnis report TABLE              per frequency block: rows, mean dimension, parameters, alpha, bytes vs.
                                 full dimension
  dnis assign TABLE              (re)assign rows to frequency blocks by push count across all shards
  dnis prune TABLE --ratio R     prune R of all entries (global percentile of |alpha*v|), fold alpha in
  sparsity report TABLE          active entries vs budget, density, fired share, rounds, bytes per row
  sparsity step TABLE [--fraction F]
                                 one cluster-wide prune-and-regrow step (default fraction: the table's
                                 cosine schedule)
  table drop NAME                drop the table and all its rows on every shard
  flush [TABLE]                  checkpoint now: write dirty rows to RocksDB and trim update logs
  checkpoint create NAME         consistent cluster checkpoint: all shards frozen (updates refused and retried
                                 by clients), each writes checkpoints/NAME in its data directory, all thaw
  checkpoint list                checkpoints on the shards and whether every shard has its part
  checkpoint restore NAME        every shard back to its part of NAME (a fresh cluster: copy each shard's
                                 checkpoints/NAME over and start embedps-server --restore-checkpoint DIR)
  export TABLE --out PREFIX      every stored row to PREFIX.ids.npy (<u8, (n,)) and PREFIX.values.npy
                                 (<f4, (n, dim)): NumPy files of the row keys (= ids) and the pulled values
  import TABLE --in PREFIX       set rows of a dense, collision-free table from such files (optimizer state reset)
  reshard prepare --add-shard HOST:PORT --out JOINING.json
                                 write a spec with a new shard that owns no slots yet (start it with that spec)
  reshard even                   live: move slots until every shard of the spec owns an even share
  reshard remove K               live: move every slot off shard K (then it can be stopped)
  reshard move FIRST-LAST --to K live: move a slot range to shard K
                                 (rows move while training continues; clients follow the new map)
  compact [TABLE]                checkpoint, then compact the table's RocksDB data (all tables by default)
  semantic-ids build --embeddings F32 --ids TXT --out CODES.tsv [--levels 3] [--codes 256]
                    [--iterations 20] [--seed 1] [--spm-vocabulary N]
                                 semantic IDs by residual k-means over item content embeddings (no
                                 cluster needed); prints prefix-similarity and codebook-utilisation tables;
                                 --spm-vocabulary also writes CODES.tsv.spm (a SentencePiece model)
  semantic-ids register --table T --codes-file CODES.tsv [--levels L]
                                 registers the items' codes (default: all but the disambiguation code)

options:
  --cluster PATH   cluster spec (JSON) with the shard addresses (required by the cluster commands)
  --json           machine-readable output
  --auth-token-file PATH   send the shared-secret token on its first line (shards started with one)
  --tls-ca PEM             connect with TLS, trusting this CA certificate
"""
let options = Options(Array(CommandLine.arguments.dropFirst()), usage: usage, flagNames: ["json"])
do {
    try await runAdmin(options)
} catch {
    printError("error: \(error)")
    exitNow(1)
}
exitNow(0)
