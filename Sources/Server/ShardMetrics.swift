import Foundation
import HTTP
import Engine

extension ShardService {
    /// The shard's Prometheus metrics: per-table rows, cache, dirty rows, log and disk bytes, request and row
    /// counters; per-shard request rate, handler latency, cache hit rate, uptime.
    public func metricsText() -> String {
        var m = MetricsText()
        guard let status = try? status(), let snapshots = try? host.withEngine({ $0.snapshots() }) else {
            m.add("embedps_up", "1 while the shard serves", .gauge, 0)
            return m.text
        }
        let shard = [("shard", String(status.shardIndex))]
        m.add("embedps_up", "1 while the shard serves", .gauge, labels: shard, 1)
        m.add("embedps_uptime_seconds", "Seconds since the shard started", .gauge, labels: shard, Double(status.uptimeSeconds))
        m.add("embedps_owned_slots", "Slots of 4096 this shard owns", .gauge, labels: shard, Double(status.ownedSlots))
        m.add("embedps_shard_map_version", "Version of the shard map this shard holds", .gauge, labels: shard, Double(status.shardMapVersion))
        m.add("embedps_requests_per_second", "Requests per second over the last 10 s", .gauge, labels: shard, status.requestsPerSecond)
        m.add("embedps_rows_per_second", "Rows pulled and pushed per second over the last 10 s", .gauge, labels: shard, status.rowsPerSecond)
        m.add("embedps_request_latency_p50_seconds", "Median handler latency of the last 4096 requests", .gauge, labels: shard, status.latencyP50Ms / 1000)
        m.add("embedps_request_latency_p99_seconds", "99th-percentile handler latency of the last 4096 requests", .gauge, labels: shard, status.latencyP99Ms / 1000)
        m.add("embedps_cache_hit_ratio", "Cache hits / lookups since start, all tables", .gauge, labels: shard, status.cacheHitRate)
        m.add("embedps_disk_bytes", "Bytes of the shard's RocksDB database (estimate)", .gauge, labels: shard, Double(status.bytesOnDisk))
        m.add("embedps_primary_epoch", "This shard's primary epoch (raised by failovers)", .gauge, labels: shard, Double(status.epoch))
        m.add("embedps_fenced", "1 when a newer primary epoch in the shard map fences this old primary", .gauge, labels: shard, status.fencedBy.isEmpty ? 0 : 1)
        if acks.required > 0 {
            let a = acks.summary
            m.add("embedps_replica_acked_pushes_total", "Pushes acknowledged after a follower confirmed them (--ack-replicas 1)", .counter, labels: shard, Double(a.acknowledged))
            m.add("embedps_replica_ack_timeouts_total", "Pushes answered NOT_REPLICATED: no follower confirmed them in time", .counter, labels: shard, Double(a.timedOut))
            m.add("embedps_replica_ack_wait_seconds_mean", "Mean wait for a follower's confirmation", .gauge, labels: shard, a.meanWaitMs / 1000)
        }
        for t in snapshots {
            let l = shard + [("table", t.spec.name)]
            m.add("embedps_table_rows", "Rows stored for the table on this shard", .gauge, labels: l, Double(t.rows))
            m.add("embedps_table_cached_rows", "Rows in the table's hot-row cache", .gauge, labels: l, Double(t.cachedRows))
            m.add("embedps_table_dirty_rows", "Cached rows newer than RocksDB (their updates are in the update log)", .gauge, labels: l, Double(t.dirtyRows))
            m.add("embedps_table_cache_capacity_rows", "Hot-row cache bound of the table", .gauge, labels: l, Double(t.cacheCapacityRows))
            m.add("embedps_table_disk_bytes", "Bytes of the table's column family (estimate)", .gauge, labels: l, Double(t.bytesOnDisk))
            m.add("embedps_table_log_bytes", "Bytes of the table's update log", .gauge, labels: l, Double(t.logBytes))
            m.add("embedps_table_log_spare_bytes", "Bytes of old update-log segments kept to write the next ones into", .gauge, labels: l, Double(t.logSpareBytes))
            m.add("embedps_table_log_segments_recycled_total", "Update-log segments written into a kept old segment", .counter, labels: l, Double(t.logSegmentsRecycled))
            m.add("embedps_table_log_segments_created_total", "Update-log segments written as new files", .counter, labels: l, Double(t.logSegmentsCreated))
            m.add("embedps_table_pulls_total", "Pull requests served", .counter, labels: l, Double(t.pulls))
            m.add("embedps_table_pushes_total", "Push requests applied", .counter, labels: l, Double(t.pushes))
            m.add("embedps_table_rows_pulled_total", "Rows pulled", .counter, labels: l, Double(t.rowsPulled))
            m.add("embedps_table_rows_pushed_total", "Distinct rows updated", .counter, labels: l, Double(t.rowsPushed))
            m.add("embedps_table_cache_hits_total", "Cache hits of pulls", .counter, labels: l, Double(t.cacheHits))
            m.add("embedps_table_cache_misses_total", "Cache misses of pulls", .counter, labels: l, Double(t.cacheMisses))
            m.add("embedps_table_checkpoints_total", "Checkpoints (dirty rows written, log trimmed)", .counter, labels: l, Double(t.checkpoints))
            m.add("embedps_table_rows_flushed_total", "Dirty rows written to RocksDB (flusher, checkpoints, back-pressure)", .counter, labels: l, Double(t.rowsFlushed))
            m.add("embedps_table_backpressure_flushes_total", "Pushes that wrote dirty rows themselves because the flusher fell behind", .counter, labels: l, Double(t.backpressureFlushes))
            m.add("embedps_table_rows_loaded_total", "Rows pushes read from RocksDB (not cached when pushed)", .counter, labels: l, Double(t.rowsLoaded))
            m.add("embedps_table_pushes_logged_first_total", "Pushes whose update-log write started before their rows were pinned (rows cached)", .counter, labels: l, Double(t.pushesLoggedFirst))
            m.add("embedps_table_snapshot_checkpoints_total", "Checkpoints written as a snapshot file beside the update log instead of through RocksDB (also in embedps_table_checkpoints_total)", .counter, labels: l, Double(t.snapshotCheckpoints))
            m.add("embedps_table_snapshot_rows_total", "Rows written by snapshot checkpoints", .counter, labels: l, Double(t.snapshotRows))
            m.add("embedps_table_snapshots_superseded_total", "Checkpoint snapshots whose rows were written to RocksDB with the table's pushes held (imports, migrations, rewrites; a checkpoint into RocksDB whose sweeps left rows only the snapshot held)", .counter, labels: l, Double(t.snapshotsSuperseded))
            m.add("embedps_table_snapshots_recycled_total", "Checkpoint snapshot files written over the previous snapshot's file instead of created (deleting it on a file system mounted with discard stalls the update log's writes)", .counter, labels: l, Double(t.snapshotsRecycled))
            m.add("embedps_table_snapshot_bytes", "Bytes of the table's checkpoint snapshot file (beside the update log; not in embedps_table_log_bytes)", .gauge, labels: l, Double(t.snapshotBytes))
            m.add("embedps_table_pulls_split_total", "Pulls whose cached rows were copied on several threads at once (large pulls alone in their table)", .counter, labels: l, Double(t.pullsSplit))
            if t.spec.admission != nil {
                m.add("embedps_table_rows_admitted_total", "Rows created by pushes once admitted", .counter, labels: l, Double(t.rowsAdmitted))
                m.add("embedps_table_pushes_refused_total", "Pushed ids counted but not applied (not admitted yet)", .counter, labels: l, Double(t.pushesRefused))
                m.add("embedps_table_admission_sketch_bytes", "Memory of the admission count sketch", .gauge, labels: l, Double(t.admissionSketchBytes))
            }
            if t.spec.eviction != nil {
                m.add("embedps_table_rows_evicted_total", "Rows deleted by eviction passes", .counter, labels: l, Double(t.rowsEvicted))
                m.add("embedps_table_eviction_passes_total", "Eviction passes", .counter, labels: l, Double(t.evictionPasses))
            }
            m.add("embedps_table_last_sequence", "Last applied update-log sequence of the table", .gauge, labels: l, Double(t.lastSequence))
            if let f = host.follower, let r = f.state(of: t.spec.name), r.replicated {
                m.add("embedps_follower_lag_records", "Records the primary holds that this follower has not applied", .gauge, labels: l,
                      Double(r.primarySequence &- min(r.primarySequence, t.lastSequence)))
                m.add("embedps_follower_lag_seconds", "Seconds since this follower last held every record of its primary (-1: never)", .gauge, labels: l, r.lagSeconds)
            }
        }
        return m.text
    }

    /// Serves `/metrics` (Prometheus text format) and `/healthz` on `port` (0 = any free port).
    public func startMetricsEndpoint(port: Int) throws -> HTTPServer {
        try HTTPServer(port: port) { [self] _, path in
            switch path {
            case "/metrics": HTTPResponse(contentType: "text/plain; version=0.0.4; charset=utf-8", body: metricsText())
            case "/healthz": HTTPResponse(body: "ok\n")
            default: HTTPResponse(status: 404, body: "not found: \(path) (try /metrics or /healthz)\n")
            }
        }
    }
}
