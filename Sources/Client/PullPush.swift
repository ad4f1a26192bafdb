import Foundation
import RPC
import Vocabulary
import EmbedPSWire

extension EmbedPSClient {
    /// Pulls the rows of `ids` (any order, duplicates allowed) into `out`, which must hold ids.count * dim
    /// floats: row i lands at out[i*dim ..< (i+1)*dim].
    public func pull(table: String, ids: [UInt64], into out: FloatBuffer) async throws {
        let route = try await route(table)
        let dim = route.dim
        guard out.count >= ids.count * dim else {
            throw ClientError.invalidArgument("pull of \(ids.count) ids from '\(table)' (dim \(dim)) needs \(ids.count * dim) floats, buffer has \(out.count)")
        }
        let plan = ids.withUnsafeBufferPointer { BatchPlan(ids: $0, route: route, slotMap: slotMap) }
        // Distinct rows land at their unique index; duplicates are expanded below.
        // A distinct batch's plan is already the plan of its unique ids.
        try await pullDistinct(table, plan.unique, route: route, into: out.base, attempt: 0, plan: plan.distinct ? plan : nil)
        if !plan.distinct {
            let outBase = UnsafeMutableRawPointer(out.base)
            // Positions i >= unique index: walk backwards so no source is overwritten before it is read.
            for i in stride(from: ids.count - 1, through: 0, by: -1) {
                let u = Int(plan.uniqueIndex[i])
                if u != i { (outBase + i * dim * 4).copyMemory(from: outBase + u * dim * 4, byteCount: dim * 4) }
            }
        }
    }

    /// Pulls distinct `ids` into `out` (row j at out[j*dim]), fanning out by owner (`known`: their plan, if
    /// the caller made it under the current map). Parts refused by a shard that no longer owns their slots
    /// (resharding) are pulled again after a shard-map refresh.
    func pullDistinct(_ table: String, _ ids: [UInt64], route: TableRoute, into out: UnsafeMutablePointer<Float>, attempt: Int,
                      plan known: BatchPlan? = nil) async throws {
        let dim = route.dim
        let plan = known ?? ids.withUnsafeBufferPointer { BatchPlan(ids: $0, route: route, slotMap: slotMap) }
        var requests: [(Int, OutgoingMessage)] = []
        for (shard, members) in plan.byShard.enumerated() where !members.isEmpty {
            let size = RowMessageEncoder.pullRequestSize(table: table, count: members.count)
            requests.append((shard, OutgoingMessage(length: size) { buf in
                RowMessageEncoder.writePullRequest(into: buf, table: table, count: members.count) { plan.unique[Int(members[$0])] }
            }))
        }
        var misrouted: [Int32] = []
        var failure: (any Error)? = nil
        for (shard, result) in await fanOutAll(requests, ShardRPC.pull) {
            let members = plan.byShard[shard]
            switch result {
            case .success(let message):
                if Self.copyRowsInPlace(message, dim: dim, members: members, into: out) { continue }
                try message.withUnsafeBytes { bytes in
                    let (rdim, values) = try RowMessageDecoder.pullResponse(bytes)
                    guard rdim == dim, values.count == members.count * dim * 4 else {
                        throw ClientError.inconsistentCluster("shard \(shard) answered \(values.count / 4) floats of dim \(rdim) for \(members.count) rows of dim \(dim)")
                    }
                    for (k, u) in members.enumerated() {
                        UnsafeMutableRawPointer(out + Int(u) * dim).copyMemory(from: values.baseAddress! + k * dim * 4, byteCount: dim * 4)
                    }
                }
            case .failure(let e):
                if let ce = e as? ClientError, ce.isWrongOwner, attempt < Self.maxMapRefreshes { misrouted += members } else if failure == nil { failure = e }
            }
        }
        if let failure { throw failure }
        guard !misrouted.isEmpty else { return }
        try await refreshShardMap()
        let again = misrouted.map { plan.unique[Int($0)] }
        let rows = FloatBuffer(count: again.count * dim)
        try await pullDistinct(table, again, route: route, into: rows.base, attempt: attempt + 1)
        for (j, u) in misrouted.enumerated() { (out + Int(u) * dim).update(from: rows.base + j * dim, count: dim) }
    }

    /// Copies a shard's PullResponse rows straight from the slices the message arrived in to their places in
    /// `out` (row k to `out[members[k] * dim]`), when the response has our shards' layout (dim, then exactly
    /// `members.count` rows of `dim` ending the message): one copy instead of making the ~1 MB message
    /// contiguous first. False, having written nothing, for any other response (then decoded strictly).
    static func copyRowsInPlace(_ message: ReceivedMessage, dim: Int, members: [Int32], into out: UnsafeMutablePointer<Float>) -> Bool {
        message.withSegments { (reader: inout SegmentReader) -> Bool in
            let total = reader.remaining
            var head = (UInt64(0), UInt64(0))  // the layout's header is at most 16 bytes
            let headBytes = min(16, total)
            let layout = withUnsafeMutableBytes(of: &head) { h -> (dim: Int, valuesOffset: Int)? in
                var peek = reader
                guard peek.read(headBytes, into: h.baseAddress!) else { return nil }
                return RowMessageDecoder.pullResponseLayout(prefix: UnsafeRawBufferPointer(rebasing: h[0..<headBytes]), total: total)
            }
            guard let layout, layout.dim == dim, total - layout.valuesOffset == members.count * dim * 4,
                  reader.read(layout.valuesOffset, into: nil) else { return false }
            // The lengths match, so every read below succeeds. Runs of consecutive places (the whole batch,
            // for a single-shard plan) are copied in one read each.
            let rowBytes = dim * 4
            var k = 0
            while k < members.count {
                var end = k + 1
                while end < members.count && members[end] == members[end - 1] + 1 { end += 1 }
                _ = reader.read((end - k) * rowBytes, into: UnsafeMutableRawPointer(out + Int(members[k]) * dim))
                k = end
            }
            return true
        } ?? false
    }

    /// Pulls rows into a new array (ids.count * dim floats).
    public func pull(table: String, ids: [UInt64]) async throws -> [Float] {
        let dim = try await route(table).dim
        let out = FloatBuffer(count: ids.count * dim)
        try await pull(table: table, ids: ids, into: out)
        return out.array
    }

    /// Pushes one gradient row per id (ids.count * dim floats in `gradients`). Duplicate ids are summed
    /// here and (for ids sharing a hashed row) on the shard. Each shard applies its part whole or not at all.
    /// Returns the rows updated across shards. `gradients` must not be written until this returns: a part
    /// whose rows lie one after another in it (a batch of distinct ids for one shard) is sent from it.
    @discardableResult
    public func push(table: String, ids: [UInt64], gradients: FloatBuffer) async throws -> Int {
        let answers = try await sendGradientRows(table: table, ids: ids, gradients: gradients, method: ShardRPC.push)
        var updated = 0
        for (shard, m) in answers { updated += Int(try Self.decode(Wire.PushResponse.self, m, shard: shard).rowsUpdated) }
        return updated
    }

    /// Validates a gradient batch's size, sums duplicate ids, splits it by owner and sends each shard its part as a
    /// PushRequest to `method`; returns the answers in completion order.
    func sendGradientRows<A>(table: String, ids: [UInt64], gradients: FloatBuffer, method: RPCMethod<Wire.PushRequest, A>) async throws -> [(Int, ReceivedMessage)] {
        let route = try await route(table)
        let dim = route.dim
        guard gradients.count == ids.count * dim else {
            throw ClientError.invalidArgument("push of \(ids.count) ids to '\(table)' (dim \(dim)) needs \(ids.count * dim) gradient floats, got \(gradients.count)")
        }
        let plan = ids.withUnsafeBufferPointer { BatchPlan(ids: $0, route: route, slotMap: slotMap) }
        // Sum duplicates into per-unique rows (only when there are duplicates).
        var summed: [Float] = []
        if !plan.distinct {
            summed = [Float](repeating: 0, count: plan.unique.count * dim)
            for i in 0..<ids.count {
                let u = Int(plan.uniqueIndex[i])
                for c in 0..<dim { summed[u * dim + c] += gradients[i * dim + c] }
            }
        }
        let source = plan.distinct ? gradients : FloatBuffer(summed)
        // The plan of the distinct ids: this one when the batch was distinct.
        return try await sendDistinctRows(table, plan.unique, rows: source, dim: dim, route: route, method: method, attempt: 0,
                                          plan: plan.distinct ? plan : nil)
    }

    /// Sends one row per distinct id (`rows[j*dim...]` for `ids[j]`) to the owners. A part refused by a shard
    /// that no longer owns its slots (nothing was applied there) is sent again, to the new owner, after a
    /// shard-map refresh; parts that succeeded are never resent. Waits for every part before reporting a
    /// failure: `ClientError.partialPush` when other parts were acknowledged, else the first part's error.
    func sendDistinctRows<A>(_ table: String, _ ids: [UInt64], rows: FloatBuffer, dim: Int, route: TableRoute, method: RPCMethod<Wire.PushRequest, A>, attempt: Int,
                             plan known: BatchPlan? = nil) async throws -> [(Int, ReceivedMessage)] {
        let plan = known ?? ids.withUnsafeBufferPointer { BatchPlan(ids: $0, route: route, slotMap: slotMap) }
        // A shard refuses a part holding a NaN or Inf whole, but only its own part: when the rows go to more
        // than one shard, they are checked here first, so no shard applies its part of a batch another would
        // refuse. A batch for one shard is checked there alone (its refusal is the whole batch's).
        if plan.byShard.lazy.filter({ !$0.isEmpty }).count > 1,
           let i = GradientCheck.firstNonFinite(UnsafeRawBufferPointer(start: rows.base, count: ids.count * dim * 4)) {
            throw ClientError.invalidArgument("value for table '\(table)' id \(ids[i / dim]) column \(i % dim) is NaN or Inf: nothing was sent")
        }
        var requests: [(Int, OutgoingMessage)] = []
        var parts: [[Int32]] = []
        let source = UnsafePointer(rows.base)
        for (shard, members) in plan.byShard.enumerated() where !members.isEmpty {
            // Members ascend, so they are one run of rows when the last is count - 1 after the first (a single
            // shard's distinct batch): the message then sends those rows from `rows` itself.
            let run = Int(members[members.count - 1] - members[0]) == members.count - 1
                ? (rows: UnsafeRawBufferPointer(start: source + Int(members[0]) * dim, count: members.count * dim * 4), owner: rows) : nil
            requests.append((shard, try pushPart(table, count: members.count, dim: dim, shard: shard,
                                                 id: { plan.unique[Int(members[$0])] }, row: { source + Int(members[$0]) * dim }, run: run)))
            parts.append(members)
        }
        let requestIDs: [String]? = method.retry == .withRequestID ? requests.map { _ in nextRequestID() } : nil
        var answers: [(Int, ReceivedMessage)] = []
        var misrouted: [Int32] = [], misroutedShard = 0
        var failed: [PartialPush.Part] = []
        var acknowledged = 0
        for (position, (shard, result)) in await fanOutAll(requests, method, requestIDs: requestIDs).enumerated() {
            switch result {
            case .success(let m): answers.append((shard, m)); acknowledged += parts[position].count
            case .failure(let e):
                if let ce = e as? ClientError, ce.isWrongOwner, attempt < Self.maxMapRefreshes {
                    if misrouted.isEmpty { misroutedShard = shard }
                    misrouted += parts[position]; continue
                }
                failed.append(failedPart(parts[position], shard: shard, requestID: requestIDs?[position],
                                         error: ClientError.wrap(e, shard: shard, address: spec.shards[shard].address),
                                         knownNotApplied: PartialPush.provesNothingApplied(e), plan: plan, source: source, dim: dim))
            }
        }
        if !failed.isEmpty {
            guard acknowledged > 0 || failed.count > 1 || !misrouted.isEmpty else { throw failed[0].error }
            // The misrouted ids were refused (nothing applied): they join the failed parts unsent.
            if !misrouted.isEmpty { failed.append(misroutedPart(misrouted, shard: misroutedShard, plan: plan, source: source, dim: dim)) }
            throw ClientError.partialPush(PartialPush(table: table, method: method, idsAcknowledged: acknowledged, failed: failed))
        }
        guard !misrouted.isEmpty else { return answers }
        try await refreshShardMap()
        let again = FloatBuffer(count: misrouted.count * dim)
        for (j, u) in misrouted.enumerated() { (again.base + j * dim).update(from: source + Int(u) * dim, count: dim) }
        do {
            return answers + (try await sendDistinctRows(table, misrouted.map { plan.unique[Int($0)] }, rows: again, dim: dim, route: route, method: method, attempt: attempt + 1))
        } catch let ClientError.partialPush(p) where acknowledged > 0 {
            throw ClientError.partialPush(PartialPush(table: table, method: method, idsAcknowledged: acknowledged + p.idsAcknowledged, failed: p.failed))
        } catch let e as ClientError where acknowledged > 0 {
            // The resent ids all failed, as one part (its shard is the first failure's).
            var part = misroutedPart(misrouted, shard: misroutedShard, plan: plan, source: source, dim: dim)
            part.error = e; part.knownNotApplied = PartialPush.provesNothingApplied(e)
            throw ClientError.partialPush(PartialPush(table: table, method: method, idsAcknowledged: acknowledged, failed: [part]))
        }
    }

    /// The unacknowledged part of `members` (indices into `plan.unique`, rows in `source`).
    private func failedPart(_ members: [Int32], shard: Int, requestID: String?, error: ClientError, knownNotApplied: Bool,
                            plan: BatchPlan, source: UnsafePointer<Float>, dim: Int) -> PartialPush.Part {
        var gradients = [Float](repeating: 0, count: members.count * dim)
        gradients.withUnsafeMutableBufferPointer { g in
            for (j, u) in members.enumerated() { (g.baseAddress! + j * dim).update(from: source + Int(u) * dim, count: dim) }
        }
        return PartialPush.Part(shard: shard, ids: members.map { plan.unique[Int($0)] }, gradients: gradients, requestID: requestID,
                                error: error, knownNotApplied: knownNotApplied)
    }

    /// Ids refused as misrouted, as a part not sent anywhere yet (nothing applied; no request id).
    private func misroutedPart(_ members: [Int32], shard: Int, plan: BatchPlan, source: UnsafePointer<Float>, dim: Int) -> PartialPush.Part {
        failedPart(members, shard: shard, requestID: nil,
                   error: .inconsistentCluster("the shard map changed under the push: these ids were refused by their old owner and not sent again"),
                   knownNotApplied: true, plan: plan, source: source, dim: dim)
    }

    /// One shard's PushRequest of `count` rows: `id(k)` and `row(k)` (dim floats) for k < count. With `run`
    /// (those rows, one after another, kept alive and unchanged by `owner` while gRPC may send them), the
    /// message is the head alone plus the rows as they are, not copied.
    func pushPart(_ table: String, count: Int, dim: Int, shard: Int, id: (Int) -> UInt64, row: (Int) -> UnsafePointer<Float>,
                  run: (rows: UnsafeRawBufferPointer, owner: FloatBuffer)? = nil) throws -> OutgoingMessage {
        let size = RowMessageEncoder.pushRequestSize(table: table, count: count, dim: dim)
        guard size <= Int(options.maxMessageBytes) else {
            throw ClientError.invalidArgument("push to shard \(shard) would be \(size) bytes, over the \(options.maxMessageBytes)-byte limit: split the batch")
        }
        if let run, count > 0, run.rows.count == count * dim * 4 {
            return OutgoingMessage(length: size - run.rows.count, fill: { buf in
                RowMessageEncoder.writePushRequestHead(into: buf, table: table, count: count, dim: dim, ids: id)
            }, borrowing: run.rows, owner: run.owner)
        }
        return OutgoingMessage(length: size) { buf in
            RowMessageEncoder.writePushRequest(into: buf, table: table, count: count, dim: dim, ids: id,
                                               row: { k, dst in dst.update(from: row(k), count: dim) })
        }
    }

    /// Sends the failed parts of a partial push again, each to its shard under the request id it was first
    /// sent with (a shard that applied a part whose answer was lost answers it again without applying it
    /// twice). A part its shard now refuses as misrouted (the map moved; nothing was applied there) goes to
    /// the new owner as a fresh push. Returns the ids acknowledged; throws `.partialPush` with what still
    /// failed. One caveat: a part whose outcome was unknown and whose slots have since moved to another shard
    /// may be applied twice (the new owner cannot know the old owner's request ids).
    @discardableResult
    public func resend(_ partial: PartialPush) async throws -> Int {
        let route = try await route(partial.table)
        let dim = route.dim
        var acknowledged = 0
        var failed: [PartialPush.Part] = []
        for part in partial.failed {
            guard part.gradients.count == part.ids.count * dim else {
                throw ClientError.invalidArgument("resend of \(part.ids.count) ids to '\(partial.table)' (dim \(dim)) carries \(part.gradients.count) floats")
            }
            let rows = FloatBuffer(part.gradients)
            do {
                if let requestID = part.requestID, part.shard < shardCount {
                    // The message holds a copy of the rows (filled at once).
                    let message = try withExtendedLifetime(rows) {
                        try pushPart(partial.table, count: part.ids.count, dim: dim, shard: part.shard,
                                     id: { part.ids[$0] }, row: { UnsafePointer(rows.base) + $0 * dim })
                    }
                    do {
                        _ = try await callRaw(shard: part.shard, partial.method, metadata: [(key: ShardMetadata.requestID, value: requestID)]) { message }
                        acknowledged += part.ids.count
                        continue
                    } catch let e as ClientError where e.isWrongOwner {
                        // Refused as misrouted: nothing applied there; route it afresh below.
                    }
                }
                guard let method = partial.method as? RPCMethod<Wire.PushRequest, Wire.PushResponse> else {
                    throw ClientError.invalidArgument("resend: \(partial.method.path) parts can only be resent to their shard")
                }
                try await refreshShardMap()
                _ = try await sendDistinctRows(partial.table, part.ids, rows: rows, dim: dim, route: route, method: method, attempt: 0)
                acknowledged += part.ids.count
            } catch let ClientError.partialPush(p) {
                acknowledged += p.idsAcknowledged; failed += p.failed
            } catch {
                var again = part
                again.error = ClientError.wrap(error, shard: part.shard, address: part.shard < shardCount ? spec.shards[part.shard].address : "?")
                again.knownNotApplied = part.knownNotApplied && PartialPush.provesNothingApplied(error)
                failed.append(again)
            }
        }
        if !failed.isEmpty {
            throw ClientError.partialPush(PartialPush(table: partial.table, method: partial.method, idsAcknowledged: acknowledged, failed: failed))
        }
        return acknowledged
    }

    /// Pushes from arrays.
    @discardableResult
    public func push(table: String, ids: [UInt64], gradients: [Float]) async throws -> Int {
        try await push(table: table, ids: ids, gradients: FloatBuffer(gradients))
    }
}
