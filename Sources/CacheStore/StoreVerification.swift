import Foundation
import HTTPCaching

/// What `outpost inspect verify` found: every damaged value in a store, walked in full.
public struct StoreVerification: Sendable, Equatable {
    /// One damaged value.
    public struct Damage: Sendable, Equatable {
        /// `entry`, `object`, `chunk`, `access`, `usage`.
        public var kind: String
        /// The URL it belongs to, when known.
        public var url: String?
        public var objectID: UInt64?
        public var what: String
    }

    /// Pages whose structure was checked (0 when another process has the store open: its
    /// file is being written, and only the values are checked, in a consistent snapshot).
    public var pages: Int
    public var entries = 0
    public var objects = 0
    public var chunks = 0
    public var damaged: [Damage] = []

    public var isIntact: Bool { damaged.isEmpty }
}

extension CacheStore {
    /// Reads every record and every body chunk (also of the stored codings), checking each
    /// checksum and that records and chunks agree, in one read transaction. The data file's
    /// structure was checked when the store opened (a store that fails that does not open).
    /// For inspection: it reads the whole store.
    public func verify() throws -> StoreVerification {
        // The file's structure only when no other process writes it (see CacheStore.open).
        var pages = 0
        if !LMDBFileCheck.isOpenElsewhere(lockFile: configuration.path + "/lock.mdb") {
            let summary = try LMDBFileCheck.check(dataFile: configuration.path + "/data.mdb")
            pages = summary.treePages + summary.overflowPages
        }
        var result = StoreVerification(pages: pages)
        try environment.read { txn in
            try txn.scan(schema.entries) { _, value in
                result.entries += 1
                do {
                    _ = try EntryRecord(decoding: value)
                } catch {
                    result.damaged.append(.init(kind: "entry", what: "\(error)"))
                }
                return true
            }
            var records: [(UInt64, [UInt8])] = []
            try txn.scan(schema.objects) { key, value in
                var reader = RecordReader(key, context: "object key")
                records.append((try reader.u64(), value))
                return true
            }
            for (id, value) in records {
                result.objects += 1
                let record: ObjectRecord
                do {
                    record = try ObjectRecord(id: id, decoding: value)
                } catch {
                    result.damaged.append(.init(kind: "object", objectID: id, what: "\(error)"))
                    continue
                }
                var bodies: [(owner: UInt64, length: Int, count: Int, name: String)] = [
                    (id, record.bodyLength, record.chunkCount, "body")
                ]
                for alternate in record.alternates {
                    bodies.append(
                        (alternate.chunkOwner, alternate.length, alternate.chunkCount, "\(alternate.coding) coding"))
                }
                for body in bodies {
                    var length = 0
                    for index in 0..<body.count {
                        result.chunks += 1
                        let value = try txn.getSealed(
                            schema.chunks, Schema.chunkKey(body.owner, index), allocator: allocator)
                        switch value {
                        case .missing:
                            result.damaged.append(
                                .init(
                                    kind: "chunk", url: record.primaryKey, objectID: id,
                                    what: "\(body.name) chunk \(index) of \(body.count) is missing"))
                        case .corrupt:
                            result.damaged.append(
                                .init(
                                    kind: "chunk", url: record.primaryKey, objectID: id,
                                    what: "\(body.name) chunk \(index): checksum mismatch"))
                        case .intact(let chunk):
                            length += chunk.readableBytes
                        }
                    }
                    if length != body.length, !result.damaged.contains(where: { $0.objectID == id }) {
                        result.damaged.append(
                            .init(
                                kind: "chunk", url: record.primaryKey, objectID: id,
                                what: "\(body.name) chunks hold \(length) bytes, the record says \(body.length)"))
                    }
                }
            }
            try txn.scan(schema.access) { key, value in
                if (try? AccessRecord(decoding: value)) == nil {
                    var reader = RecordReader(key, context: "access key")
                    result.damaged.append(
                        .init(kind: "access", objectID: try? reader.u64(), what: "access record: checksum mismatch"))
                }
                return true
            }
            do {
                _ = try schema.usage(txn)
            } catch {
                result.damaged.append(.init(kind: "usage", what: "\(error)"))
            }
        }
        return result
    }
}
