import HTTPCaching
import NIOCore

/// The named databases of the cache schema (layouts in Records.swift) and the operations on
/// them that run inside one transaction. Write operations are only called by the writer
/// thread; read operations run anywhere.
struct Schema: Sendable {
    let meta: LMDBDatabase
    let entries: LMDBDatabase
    let objects: LMDBDatabase
    let chunks: LMDBDatabase
    let access: LMDBDatabase
    let lru: LMDBDatabase
    let pending: LMDBDatabase
    let urls: LMDBDatabase
    let tags: LMDBDatabase

    static let databaseCount = 9

    init(environment: LMDBEnvironment, create: Bool) throws {
        meta = try environment.openDatabase("meta", create: create)
        entries = try environment.openDatabase("entries", create: create)
        objects = try environment.openDatabase("objects", create: create)
        chunks = try environment.openDatabase("chunks", create: create)
        access = try environment.openDatabase("access", create: create)
        lru = try environment.openDatabase("lru", create: create)
        pending = try environment.openDatabase("pending", create: create)
        urls = try environment.openDatabase("urls", create: create)
        tags = try environment.openDatabase("tags", create: create)
    }

    /// The longest URL prefix in a `urls` key; the rest of the URL is compared from the entry.
    static let urlKeyPrefixLength = 400

    static func urlKey(_ primaryKey: String, digest: [UInt8]) -> [UInt8] {
        Array(primaryKey.utf8.prefix(urlKeyPrefixLength)) + digest
    }

    static func tagKey(_ tag: String, digest: [UInt8]) -> [UInt8] { tagScanPrefix(tag) + digest }
    static func tagScanPrefix(_ tag: String) -> [UInt8] { Array(tag.utf8) + [0] }

    static func chunkKey(_ id: UInt64, _ index: Int) -> [UInt8] { id.bigEndianBytes + UInt32(index).bigEndianBytes }

    /// The chunk key's 12 bytes on the stack, for reads on the hit path.
    static func withChunkKey<T>(_ id: UInt64, _ index: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T
    {
        try withUnsafeBytes(of: (id.bigEndian, UInt32(truncatingIfNeeded: index).bigEndian)) { bytes in
            try body(UnsafeRawBufferPointer(rebasing: bytes[0..<12]))
        }
    }
    static func lruKey(_ tick: UInt64, _ id: UInt64) -> [UInt8] { tick.bigEndianBytes + id.bigEndianBytes }

    // MARK: reads

    func entry(_ txn: LMDBTransaction, primaryKey: String) throws -> EntryRecord? {
        guard let bytes = try txn.get(entries, KeyDigest.digest(primaryKey)) else { return nil }
        let entry = try EntryRecord(decoding: bytes)
        // A digest collision is a miss, never another URL's object.
        return entry.primaryKey == primaryKey ? entry : nil
    }

    func object(_ txn: LMDBTransaction, id: UInt64) throws -> ObjectRecord? {
        try txn.get(objects, id.bigEndianBytes).map { try ObjectRecord(id: id, decoding: $0) }
    }

    func accessRecord(_ txn: LMDBTransaction, id: UInt64) throws -> AccessRecord? {
        try txn.get(access, id.bigEndianBytes).map { try AccessRecord(decoding: $0) }
    }

    /// The entries whose URL starts with `prefix`, in URL order, until `body` returns false.
    func entries(
        _ txn: LMDBTransaction, prefix: String, _ body: (EntryRecord) throws -> Bool
    ) throws {
        let scanPrefix = Array(prefix.utf8.prefix(Schema.urlKeyPrefixLength))
        try txn.scan(urls, from: scanPrefix.isEmpty ? nil : scanPrefix) { key, _ in
            guard key.starts(with: scanPrefix) else { return false }
            guard key.count >= 16,
                let bytes = try txn.get(entries, Array(key.suffix(16))),
                let entry = try? EntryRecord(decoding: bytes),
                entry.primaryKey.hasPrefix(prefix)
            else { return true }
            return try body(entry)
        }
    }

    /// The entries indexed under `tag` (some of whose variants carry it).
    func entries(_ txn: LMDBTransaction, tag: String) throws -> [EntryRecord] {
        let scanPrefix = Schema.tagScanPrefix(tag)
        var digests: [[UInt8]] = []
        try txn.scan(tags, from: scanPrefix) { key, _ in
            guard key.starts(with: scanPrefix) else { return false }
            digests.append(Array(key.dropFirst(scanPrefix.count)))
            return true
        }
        return try digests.compactMap { digest in
            try txn.get(entries, digest).flatMap { try? EntryRecord(decoding: $0) }
        }
    }

    /// The union of the tags of an entry's variants.
    /// - Parameter known: tags of objects the caller has in hand (a record it just wrote), so
    ///   that they are not read back and decoded.
    func tags(_ txn: LMDBTransaction, of entry: EntryRecord?, known: [UInt64: [String]] = [:]) throws -> Set<String> {
        guard let entry else { return [] }
        var all = Set<String>()
        for variant in entry.variants {
            if let tags = known[variant.objectID] {
                all.formUnion(tags)
            } else if let record = try? object(txn, id: variant.objectID) {
                all.formUnion(record.tags)
            }
        }
        return all
    }

    func usage(_ txn: LMDBTransaction) throws -> StoreUsage {
        try txn.get(meta, Array("usage".utf8)).map { try StoreUsage(decoding: $0) } ?? StoreUsage()
    }

    // MARK: writes

    /// Brings the URL and tag indexes in line with an entry after it changed: `before` is the
    /// tag set it had, `entry` what it is now (nil when it is gone).
    func reindex(
        _ txn: LMDBTransaction, primaryKey: String, before: Set<String>, entry: EntryRecord?,
        knownTags: [UInt64: [String]] = [:]
    ) throws {
        let digest = KeyDigest.digest(primaryKey)
        let after = try tags(txn, of: entry, known: knownTags)
        if entry == nil {
            try txn.delete(urls, Schema.urlKey(primaryKey, digest: digest))
        } else {
            try txn.put(urls, Schema.urlKey(primaryKey, digest: digest), [])
        }
        for tag in before.subtracting(after) { try txn.delete(tags, Schema.tagKey(tag, digest: digest)) }
        for tag in after.subtracting(before) { try txn.put(tags, Schema.tagKey(tag, digest: digest), []) }
    }

    /// Pages held inside the data file for a full disk: the writer deletes this value first,
    /// so that the transactions that evict and purge find free pages without growing the file.
    static let ballastKey = Array("ballast".utf8)
    static let ballastSize = 256 << 10

    func putBallast(_ txn: LMDBTransaction) throws {
        guard try txn.get(meta, Schema.ballastKey) == nil else { return }
        try txn.put(meta, Schema.ballastKey, [UInt8](repeating: 0, count: Schema.ballastSize))
    }

    func removeBallast(_ txn: LMDBTransaction) throws { try txn.delete(meta, Schema.ballastKey) }

    /// The sequence number of the last purge from the fleet's journal applied to this store.
    static let journalKey = Array("journal.applied".utf8)

    func journalApplied(_ txn: LMDBTransaction) throws -> Int64 {
        guard let bytes = try txn.get(meta, Schema.journalKey) else { return 0 }
        var reader = try RecordReader(sealed: bytes, context: "journal.applied")
        return Int64(bitPattern: try reader.u64())
    }

    func putJournalApplied(_ txn: LMDBTransaction, _ sequence: Int64) throws {
        var writer = RecordWriter(capacity: 16)
        writer.u64(UInt64(bitPattern: sequence))
        try txn.put(meta, Schema.journalKey, writer.sealed)
    }

    func putUsage(_ txn: LMDBTransaction, _ usage: StoreUsage) throws {
        try txn.put(meta, Array("usage".utf8), usage.encoded())
    }

    /// Removes an object: its record, chunks, access record and LRU position. Returns it.
    @discardableResult
    func removeObject(_ txn: LMDBTransaction, id: UInt64, usage: inout StoreUsage) throws -> ObjectRecord? {
        let record: ObjectRecord?
        do {
            record = try object(txn, id: id)
        } catch StoreError.corruptRecord {
            // Its record is damaged: its own chunks go by their key prefix, and what they held
            // comes off the usage count (its codings' chunks cannot be found without the record;
            // eviction never reaches them, and they are counted no more).
            let removed = try removeChunks(txn, id: id)
            usage.bytes -= min(usage.bytes, UInt64(removed + 256))
            usage.objects -= min(usage.objects, 1)
            record = nil
        }
        if let record {
            for index in 0..<record.chunkCount { try txn.delete(chunks, Schema.chunkKey(id, index)) }
            for alternate in record.alternates {
                for index in 0..<alternate.chunkCount {
                    try txn.delete(chunks, Schema.chunkKey(alternate.chunkOwner, index))
                }
            }
            usage.bytes -= min(usage.bytes, UInt64(record.cost))
            usage.objects -= min(usage.objects, 1)
        }
        try txn.delete(objects, id.bigEndianBytes)
        if let accessRecord = try? accessRecord(txn, id: id) {
            try txn.delete(lru, Schema.lruKey(accessRecord.tick, id))
        }
        try txn.delete(access, id.bigEndianBytes)
        return record
    }

    /// Deletes the chunks of an object that never committed.
    /// Returns the bytes the deleted chunk values held.
    @discardableResult
    func removeChunks(_ txn: LMDBTransaction, id: UInt64) throws -> Int {
        var keys: [[UInt8]] = []
        var bytes = 0
        let prefix = id.bigEndianBytes
        try txn.scan(chunks, from: prefix) { key, value in
            guard key.starts(with: prefix) else { return false }
            keys.append(key)
            bytes += value.count
            return true
        }
        for key in keys { try txn.delete(chunks, key) }
        try txn.delete(pending, id.bigEndianBytes)
        return bytes
    }

    /// Removes a whole entry (every variant). Returns the number of objects removed.
    func removeEntry(_ txn: LMDBTransaction, primaryKey: String, usage: inout StoreUsage) throws -> Int {
        let digest = KeyDigest.digest(primaryKey)
        guard let bytes = try txn.get(entries, digest) else { return 0 }
        let entry = try? EntryRecord(decoding: bytes)
        guard let entry, entry.primaryKey == primaryKey else { return 0 }
        let before = try tags(txn, of: entry)
        for variant in entry.variants { try removeObject(txn, id: variant.objectID, usage: &usage) }
        try txn.delete(entries, digest)
        try reindex(txn, primaryKey: primaryKey, before: before, entry: nil)
        return entry.variants.count
    }

    /// Drops one variant from its entry after its object (`removed`) was removed.
    func unlinkVariant(_ txn: LMDBTransaction, removed: ObjectRecord) throws {
        try unlinkVariant(txn, objectID: removed.id, primaryKey: removed.primaryKey, tags: removed.tags)
    }

    /// Drops the variant `objectID` from the entry of `primaryKey`; `tags` are the removed
    /// object's (unknown when its record was damaged: the tag index may then keep a key that
    /// leads nowhere, which tag lookups skip).
    func unlinkVariant(
        _ txn: LMDBTransaction, objectID: UInt64, primaryKey: String, tags removedTags: [String] = []
    )
        throws
    {
        let digest = KeyDigest.digest(primaryKey)
        guard let bytes = try txn.get(entries, digest), var entry = try? EntryRecord(decoding: bytes),
            entry.primaryKey == primaryKey
        else { return }
        entry.variants.removeAll { $0.objectID == objectID }
        // The object is already gone from `objects`: its tags count as the entry's before.
        let before = try tags(txn, of: entry).union(removedTags)
        if entry.variants.isEmpty {
            try txn.delete(entries, digest)
            try reindex(txn, primaryKey: primaryKey, before: before, entry: nil)
        } else {
            try txn.put(entries, digest, entry.encoded())
            try reindex(txn, primaryKey: primaryKey, before: before, entry: entry)
        }
    }

    /// Removes an entry whose record is damaged (its variants are unknown: their objects stay
    /// until eviction reaches them, unreachable by any lookup).
    func removeDamagedEntry(_ txn: LMDBTransaction, primaryKey: String) throws {
        let digest = KeyDigest.digest(primaryKey)
        guard let bytes = try txn.get(entries, digest) else { return }
        // Only if it is still the damaged one: a new entry may have replaced it meanwhile.
        guard (try? EntryRecord(decoding: bytes)) == nil else { return }
        try txn.delete(entries, digest)
        try txn.delete(urls, Schema.urlKey(primaryKey, digest: digest))
    }

    func touch(_ txn: LMDBTransaction, id: UInt64, hits: UInt64, at time: Double, usage: inout StoreUsage) throws {
        guard var record = try? accessRecord(txn, id: id) else { return }
        try txn.delete(lru, Schema.lruKey(record.tick, id))
        record.tick = usage.nextTick
        usage.nextTick += 1
        record.hits += hits
        record.lastAccess = max(record.lastAccess, time)
        try txn.put(lru, Schema.lruKey(record.tick, id), [])
        try txn.put(access, id.bigEndianBytes, record.encoded())
    }
}
