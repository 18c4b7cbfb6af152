import Foundation
import HTTPCaching
import NIOCore
import Synchronization

/// The store as one event loop reads it on the hit path (docs/performance.md).
///
/// - One LMDB read transaction, reset between reads and renewed for the next, instead of a
///   transaction begun and aborted per read.
/// - Records are compared in place, in the map, with the decoded copies this session keeps
///   from earlier reads: while a record's bytes are unchanged, a hit decodes nothing and builds
///   no String. A record that changed (a 304 update, a soft purge, a new variant) no longer
///   matches its bytes and is decoded again, so a decoded copy can never be out of date.
/// - The body of a one-chunk object is copied once, from the map into the buffer the
///   response is written from, and its checksum checked; up to `store.hot_body_bytes` of
///   such bodies are kept with the records, and a hit whose object record is unchanged sends
///   the kept copy without reading the chunk again. Object ids are never reused and a chunk
///   is written once, before the record that names it, so while a record's bytes are
///   unchanged its body is the one kept (and was verified when it was read).
///
/// A session belongs to one thread at a time (its event loop); its lock is never contended
/// except by ``CacheStore/close()``, which ends every session before the environment closes.
public final class StoreReadSession: @unchecked Sendable {
    /// A decoded record and the exact bytes it was decoded from.
    private struct Decoded<Record> {
        var bytes: [UInt8]
        var record: Record
        /// Changes whenever the record is decoded anew, so that callers can key what they
        /// derive from the record on (id, revision).
        var revision: UInt64
    }

    private let store: CacheStore
    private let state: Mutex<State>

    private struct State {
        var reader: LMDBReader?
        let capacity: Int
        var entries: [KeyDigest.Value: Decoded<EntryRecord>] = [:]
        var objects: [UInt64: Decoded<ObjectRecord>] = [:]
        var nextRevision: UInt64 = 1
        /// Verified one-chunk bodies by object id, with the revision of the record they were
        /// read with; at most `bodyBudget` bytes (past it they are dropped and read again).
        var bodies: [UInt64: (revision: UInt64, body: ByteBuffer)] = [:]
        var bodyBytes = 0
        let bodyBudget: Int

        /// The kept body of an object at this revision, else read from the map and kept.
        mutating func body(
            _ record: ObjectRecord, revision: UInt64, read: () throws -> CacheStore.InlineBody?
        ) rethrows -> CacheStore.InlineBody? {
            if let kept = bodies[record.id], kept.revision == revision { return .whole(kept.body) }
            let body = try read()
            guard case .whole(let buffer)? = body, buffer.readableBytes > 0, buffer.readableBytes <= bodyBudget
            else { return body }
            if let replaced = bodies[record.id] { bodyBytes -= replaced.body.readableBytes }
            if bodyBytes + buffer.readableBytes > bodyBudget {
                bodies.removeAll(keepingCapacity: true)
                bodyBytes = 0
            }
            bodies[record.id] = (revision, buffer)
            bodyBytes += buffer.readableBytes
            return body
        }

        /// The entry for `bytes`: the kept copy when its bytes are the same, else decoded anew.
        mutating func entry(_ bytes: UnsafeRawBufferPointer, key: KeyDigest.Value) throws -> EntryRecord {
            if let kept = entries[key], kept.bytes.sameBytes(as: bytes) { return kept.record }
            let record = try EntryRecord(decoding: Array(bytes))
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[key] = Decoded(bytes: Array(bytes), record: record, revision: takeRevision())
            return record
        }

        /// The object record for `bytes` and its revision, as ``entry(_:key:)``.
        mutating func object(_ bytes: UnsafeRawBufferPointer, id: UInt64) throws -> (ObjectRecord, UInt64) {
            if let kept = objects[id], kept.bytes.sameBytes(as: bytes) { return (kept.record, kept.revision) }
            let record = try ObjectRecord(id: id, decoding: Array(bytes))
            let revision = takeRevision()
            if objects.count >= capacity { objects.removeAll(keepingCapacity: true) }
            objects[id] = Decoded(bytes: Array(bytes), record: record, revision: revision)
            return (record, revision)
        }

        private mutating func takeRevision() -> UInt64 {
            defer { nextRevision += 1 }
            return nextRevision
        }
    }

    /// - Parameters:
    ///   - capacity: records of each kind kept decoded (`store.hot_records`); past it the kept
    ///     ones are dropped and decoded again as they are read.
    ///   - bodyBudget: bytes of one-chunk bodies kept (`store.hot_body_bytes`); 0: none.
    init(store: CacheStore, capacity: Int, bodyBudget: Int) throws {
        self.store = store
        state = Mutex(
            State(
                reader: try LMDBReader(environment: store.environment), capacity: max(1, capacity),
                bodyBudget: max(0, bodyBudget)))
    }

    /// What a lookup found: as ``CacheStore/Lookup``, with the record's revision.
    public enum Lookup {
        case noEntry
        case noMatchingVariant
        /// The selected response; `revision` changes whenever the record's bytes change.
        case found(ObjectRecord, revision: UInt64, body: ByteBuffer?)
    }

    /// Finds the stored response a request selects (RFC 9111 §4.1), as ``CacheStore/lookup(_:requestHeaders:)``,
    /// except that the body of an object with stored codings is not read: the caller reads the
    /// representation it sends (``readChunk(objectID:index:)``), instead of reading and
    /// checking an identity body that a client asking for br or gzip does not get.
    public func lookup(_ primaryKey: String, requestHeaders: HeaderFields) throws -> Lookup {
        let digest = KeyDigest.value(primaryKey)
        let schema = store.schema
        let epoch = store.removalsCompleted.load(ordering: .acquiring)
        return try state.withLock { state in
            guard let reader = state.reader else { throw StoreError.closed }
            return try reader.read { txn -> Lookup in
                let entry = try store.decodeReporting(StoreCorruption(primaryKey: primaryKey)) {
                    try digest.withBytes { key in
                        try txn.withValue(schema.entries, key: key) { try state.entry($0, key: digest) }
                    }
                }
                return try store.select(
                    txn, entry: entry, primaryKey: primaryKey, requestHeaders: requestHeaders, removalEpoch: epoch,
                    readsBody: { $0.alternates.isEmpty },
                    body: { record, revision in
                        try state.body(record, revision: revision) { try self.store.inlineBody(txn, of: record) }
                    }
                ) {
                    id in
                    try withUnsafeBytes(of: id.bigEndian) { key in
                        try txn.withValue(schema.objects, key: key) { try state.object($0, id: id) }
                    }
                }
            }
        }
    }

    /// One body chunk, verified and copied out of the map in this session's transaction; nil
    /// when the object is gone or the chunk is damaged (as ``CacheStore/readChunk(objectID:index:)``).
    public func readChunk(objectID: UInt64, index: Int) throws -> ByteBuffer? {
        let value = try state.withLock { state in
            guard let reader = state.reader else { throw StoreError.closed }
            return try reader.read { txn in
                try Schema.withChunkKey(objectID, index) {
                    try txn.getSealed(store.schema.chunks, key: $0, allocator: store.allocator)
                }
            }
        }
        return store.verifiedChunk(value, owner: objectID, index: index)
    }

    /// Ends the session: its transaction is freed and later reads fail with ``StoreError/closed``.
    func close() {
        state.withLock { state in
            state.reader?.close()
            state.reader = nil
            state.entries = [:]
            state.objects = [:]
            state.bodies = [:]
            state.bodyBytes = 0
        }
    }
}

extension [UInt8] {
    /// Whether these are exactly the bytes of `other` (a record still in the map).
    fileprivate func sameBytes(as other: UnsafeRawBufferPointer) -> Bool {
        count == other.count
            && (count == 0 || withUnsafeBytes { memcmp($0.baseAddress!, other.baseAddress!, count) == 0 })
    }
}
