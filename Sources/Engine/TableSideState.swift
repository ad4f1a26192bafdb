import Foundation
import Vocabulary
import Storage

/// What a table holds beside its rows: the dynamic-sparsity schedule, the last whole-table rewrite, the DNIS
/// state and the semantic items. A follower's copy and a delta checkpoint carry it with the rows.
/// Invariant: `dnis`, when set, is an encoded `DnisState`; `items`, when set, an encoded
/// `TableOperation.registerItems` holding every registered item.
struct TableSideState: Codable, Sendable, Equatable {
    var sparsityRound: UInt32 = 0
    var sparsityStepSequence: UInt64 = 0
    var rewriteSequence: UInt64 = 0
    var dnis: Data? = nil
    var items: Data? = nil
}

extension EmbeddingTable {
    /// Whether the table keeps state beside its rows (sparsity, DNIS or semantic configuration).
    var hasSideState: Bool { spec.semantic != nil || spec.dnis != nil || spec.sparsity != nil }

    /// The table's side state now.
    func sideState() -> TableSideState {
        let (round, stepSeq, rewriteSeq) = commit.withLock { ($0.sparsityRound, $0.sparsityStepSeq, $0.rewriteSeq) }
        var s = TableSideState(sparsityRound: round, sparsityStepSequence: stepSeq, rewriteSequence: rewriteSeq)
        if dnis != nil { s.dnis = Data(dnisBox.withLock { $0 }.encoded) }
        if let store = semantic?.items {
            let all = store.page(after: nil, limit: Int.max)
            s.items = Data(TableOperation.registerItems(items: all.items, codes: all.codes).encoded)
        }
        return s
    }

    /// Takes over `side` durably (a follower's copy, a delta being restored): DNIS state, sparsity schedule
    /// and last rewrite in one synced batch, then the items (registered, replacing codes of the same ids).
    func adoptSideState(_ side: TableSideState) throws(EngineError) {
        let b = WriteBatch()
        var dnisState: DnisState? = nil
        if let bytes = side.dnis {
            let d = try requireDnis()
            guard let s = DnisState(decoding: [UInt8](bytes), blocks: d.config.blocks, dim: spec.dim) else {
                throw .malformed("DNIS state for '\(spec.name)' has \(bytes.count) bytes, expected \(20 + 4 * d.config.blocks * spec.dim)")
            }
            dnisState = s
            b.put(db.defaultFamily, key: dnisKey, value: s.encoded)
        }
        var items: (ids: [UInt64], codes: [UInt32])? = nil
        if let bytes = side.items {
            guard case .success(.registerItems(let ids, let codes)) = bytes.withUnsafeBytes({ TableOperation.decode($0) }) else {
                throw .malformed("the item codes for '\(spec.name)' do not decode")
            }
            items = (ids, codes)
        }
        var sparsity = [UInt8](repeating: 0, count: 12)
        sparsity.withUnsafeMutableBytes {
            $0.storeBytes(of: side.sparsityRound, as: UInt32.self); $0.storeBytes(of: side.sparsityStepSequence, toByteOffset: 4, as: UInt64.self)
        }
        b.put(db.defaultFamily, key: identity.sparsityKey, value: sparsity)
        b.put(db.defaultFamily, key: identity.rewriteKey, value: withUnsafeBytes(of: side.rewriteSequence) { Array($0) })
        do { try db.write(b, sync: true) } catch { throw .storage("table '\(spec.name)' side state: \(error)") }
        if let dnisState { dnisBox.withLock { $0 = dnisState } }
        commit.withLock { state in
            state.sparsityRound = side.sparsityRound; state.sparsityStepSeq = side.sparsityStepSequence; state.rewriteSeq = side.rewriteSequence
        }
        if let items {
            guard let store = semantic?.items else { throw .invalidSpec(table: spec.name, message: "item codes for a table without a semantic-ID configuration") }
            guard items.codes.count == items.ids.count * store.levels else {
                throw .malformed("table '\(spec.name)': \(items.codes.count) codes for \(items.ids.count) items of \(store.levels) levels")
            }
            do { try store.register(items: items.ids, flat: items.codes) } catch { throw .storage("table '\(spec.name)' items: \(error)") }
        }
    }
}
