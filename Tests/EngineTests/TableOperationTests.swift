import Testing
import Foundation
@testable import Engine

/// Operation records (the update log's non-push records): every kind round-trips; truncated, over-long,
/// unknown or hostile records are refused without allocating what their counts claim; push records are
/// never taken for operations.
@Suite struct TableOperationTests {
    static let all: [TableOperation] = [
        .sparsityStep(prune: 12, grow: 7, round: 3),
        .dnisAssign(take: [5, 0, 9]),
        .dnisPrune(prune: 1 << 40, threshold: 0.25),
        .dnisState([1, 2, 3, 4, 5]),
        .removeRows([1, .max, 42]),
        .installRows([.init(key: 9, row: [0xAA, 0xBB]), .init(key: 10, row: [])]),
        .dropSlots([0, 4095]),
        .registerItems(items: [100, 200], codes: [1, 2, 3, 4, 5, 6]),
        .removeRows([]),
    ]

    @Test func everyKindRoundTrips() {
        for op in Self.all {
            let bytes = op.encoded
            #expect(bytes.withUnsafeBytes { TableOperation.isOperation($0) })
            let back = bytes.withUnsafeBytes { TableOperation.decode($0) }
            #expect((try? back.get()) == op, "\(op)")
        }
    }

    @Test func truncatedOverLongUnknownAndHostileRecordsAreRefused() {
        for op in Self.all {
            let bytes = op.encoded
            for cut in [bytes.count - 1, 9, 8] where cut < bytes.count && cut >= 8 {
                let r = Array(bytes.prefix(cut)).withUnsafeBytes { TableOperation.decode($0) }
                if case .success(let got) = r { Issue.record("\(op) cut to \(cut) bytes decoded as \(got)") }
            }
            let longer = (bytes + [0]).withUnsafeBytes { TableOperation.decode($0) }
            if case .success = longer { Issue.record("\(op) with a trailing byte decoded") }
        }
        var unknown = TableOperation.dropSlots([1]).encoded
        unknown[4] = 99
        if case .success = unknown.withUnsafeBytes({ TableOperation.decode($0) }) { Issue.record("an unknown kind decoded") }
        // A count of 2^32 - 1 elements in a short record: refused before anything is allocated.
        var hostile = TableOperation.removeRows([]).encoded
        hostile.replaceSubrange(8..<12, with: [0xFF, 0xFF, 0xFF, 0xFF])
        if case .success = hostile.withUnsafeBytes({ TableOperation.decode($0) }) { Issue.record("a hostile count decoded") }
        // A slot above 65535 is refused.
        var slot = TableOperation.dropSlots([1]).encoded
        slot.replaceSubrange(12..<16, with: [0, 0, 1, 0])
        if case .success = slot.withUnsafeBytes({ TableOperation.decode($0) }) { Issue.record("slot 65536 decoded") }
    }

    @Test func pushRecordsAreNotOperations() {
        // A push record starts with its row count (u32), then keys and gradients.
        var push: [UInt8] = [2, 0, 0, 0]
        push += [UInt8](repeating: 7, count: 2 * (8 + 4 * 4))
        #expect(!push.withUnsafeBytes { TableOperation.isOperation($0) })
        #expect(![UInt8]([0xFF, 0xFF, 0xFF, 0xFF]).withUnsafeBytes { TableOperation.isOperation($0) }, "too short for a kind")
    }
}
