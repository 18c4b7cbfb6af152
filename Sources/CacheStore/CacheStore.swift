import Foundation
import HTTPCaching
import NIOCore
import Synchronization

/// A damaged value a read found: what, and what holds it, as far as the reader knew.
public struct StoreCorruption: Sendable, Equatable, CustomStringConvertible {
    public var what: String
    public var primaryKey: String?
    public var objectID: UInt64?
    /// The id a damaged body chunk is stored under (an object's, or one of its codings').
    public var chunkOwner: UInt64?

    public init(what: String = "", primaryKey: String? = nil, objectID: UInt64? = nil, chunkOwner: UInt64? = nil) {
        self.what = what
        self.primaryKey = primaryKey
        self.objectID = objectID
        self.chunkOwner = chunkOwner
    }

    /// What holds the damage, as one key (the same damage found twice has the same key).
    var holder: String {
        if let objectID { return "object \(objectID)" }
        if let chunkOwner { return "chunks \(chunkOwner)" }
        return "entry \(primaryKey ?? "")"
    }

    public var description: String {
        var parts = [what]
        if let primaryKey { parts.append("url \(primaryKey)") }
        if let objectID { parts.append("object \(objectID)") }
        if let chunkOwner { parts.append("chunks of \(chunkOwner)") }
        return parts.joined(separator: ", ")
    }
}

/// The cache's storage: stored responses and their bodies in an LMDB environment.
///
/// Reads (``lookup(_:requestHeaders:)``, ``readChunk(objectID:index:)``) run on the caller's
/// thread in short read transactions and never wait for the writer. Writes go through one
/// writer thread that batches them (see `StoreWriter`). A body becomes visible only when the
/// object's record commits, after its last chunk: a crash leaves the old object or the new
/// one, never a torn one.
public final class CacheStore: Sendable {
    public let configuration: StoreConfiguration
    let environment: LMDBEnvironment
    let schema: Schema
    private let writer: StoreWriter?
    let allocator = ByteBufferAllocator()
    /// The event loops' read sessions, ended by ``close()`` before the environment closes.
    private let sessions = Mutex<[StoreReadSession]>([])
    /// Damaged values found by reads since the store opened, and who is told of each.
    private let corruptions = Mutex(CorruptionState())
    /// How many damaged holders await removal (``CorruptionState/removing``): lookups skip
    /// them meanwhile, and only look when there are any.
    private let pendingRemovals = Atomic<Int>(0)
    /// Removals committed since the store opened. A lookup reads it before its transaction
    /// begins: a removal that commits meanwhile is not in the lookup's snapshot, but is no
    /// longer in ``CorruptionState/removing`` either (see ``awaitsRemoval(_:since:)``).
    let removalsCompleted = Atomic<Int>(0)
    /// Objects stored before this time (the bits of a Double; 0: none) are not served: a
    /// node catching up with the fleet's purge journal hides what a purge it missed could
    /// cover (docs/fleet.md).
    private let servingFloor = Atomic<UInt64>(0)

    private struct CorruptionState {
        var count: UInt64 = 0
        var handler: (@Sendable (StoreCorruption) -> Void)?
        /// What was reported and is waiting for the writer to remove it: reads that find the
        /// same damage meanwhile (the hit path, then the pipeline) neither count nor log again.
        var removing: Set<String> = []
    }

    /// What opening the store found and did about a damaged store (`store.on_corruption =
    /// "reset"`): nil when the store opened as it was.
    public let recovery: StoreRecovery?

    /// Opens the store, creating it in an empty directory. A writable open also removes the
    /// chunks of objects that were being written when the previous process stopped.
    ///
    /// Before liblmdb maps the data file, the file's structure is checked (``LMDBFileCheck``):
    /// a truncated or damaged file, or a store of an older format without checksums, is
    /// refused with ``StoreError/damaged(path:reason:)``, or, when the configuration says
    /// `reset`, moved aside into a `damaged-<time>` directory inside the store directory (the
    /// previous one is removed) and the store starts empty.
    public init(configuration: StoreConfiguration) throws {
        self.configuration = configuration
        let path = configuration.path
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard !configuration.readOnly else { throw StoreError.notAStore(path: path, reason: "no such directory") }
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } else if !isDirectory.boolValue {
            throw StoreError.notAStore(path: path, reason: "not a directory")
        }
        if !FileManager.default.fileExists(atPath: path + "/data.mdb") {
            if configuration.readOnly { throw StoreError.notAStore(path: path, reason: "no data.mdb") }
            // A new store goes into an empty directory only: `--store /etc` must not scatter
            // Outpost's files among someone else's.
            let ours: (String) -> Bool = {
                $0 == "lock.mdb" || $0 == DiskReserve.fileName || $0.hasPrefix("damaged-") || $0.hasPrefix(".")
                    || $0 == "lost+found"  // the root of a volume of its own
            }
            let others = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { !ours($0) }
            if !others.isEmpty {
                throw StoreError.notAStore(
                    path: path,
                    reason:
                        "it holds other files (\(others.sorted().prefix(5).joined(separator: ", "))\(others.count > 5 ? ", …" : "")) "
                        + "and no store; a new store needs an empty directory")
            }
        }
        do {
            (environment, schema, writer) = try Self.open(configuration)
            recovery = nil
        } catch StoreError.damaged(_, let reason)
            where configuration.onCorruption == .reset && !configuration.readOnly
        {
            let movedTo = try Self.moveAside(path: path)
            (environment, schema, writer) = try Self.open(configuration)
            recovery = StoreRecovery(reason: reason, movedTo: movedTo)
        }
    }

    /// Checks and opens the environment, the schema and (writable) the writer.
    private static func open(_ configuration: StoreConfiguration) throws -> (LMDBEnvironment, Schema, StoreWriter?) {
        let path = configuration.path
        let dataFile = path + "/data.mdb"
        // An empty data file is a store that was created and never written: liblmdb sets it up.
        // A store another process has open (the server, for `inspect`) is being written:
        // plain reads of its file race with the writer and would see pages change under them.
        // That process checked the file when it opened it; this one trusts liblmdb's snapshot,
        // and a damaged verdict can never move a live store aside.
        if let size = (try? FileManager.default.attributesOfItem(atPath: dataFile))?[.size] as? Int,
            size > 0 || configuration.readOnly, !LMDBFileCheck.isOpenElsewhere(lockFile: path + "/lock.mdb")
        {
            do {
                _ = try LMDBFileCheck.check(dataFile: dataFile)
            } catch let damage as LMDBFileCheck.Damage {
                if damage.notLMDB { throw StoreError.notAStore(path: path, reason: damage.description) }
                throw StoreError.damaged(path: path, reason: damage.description)
            }
        }
        let environment: LMDBEnvironment
        do {
            environment = try LMDBEnvironment(
                path: path, mapSize: configuration.mapSize, maxDatabases: Schema.databaseCount + 1,
                readOnly: configuration.readOnly, syncCommits: configuration.syncCommits)
        } catch let error as LMDBError where error.isInvalidFile {
            throw StoreError.notAStore(path: path, reason: error.description)
        } catch let error as LMDBError {
            throw StoreError.lmdb(error)
        }
        do {
            let (schema, writer) = try openSchema(environment, configuration)
            return (environment, schema, writer)
        } catch {
            environment.close()
            throw error
        }
    }

    private static let formatKey = Array("format".utf8)

    /// Whether a format found in a store is one a later Outpost wrote (refused whatever
    /// `on_corruption` says: an older Outpost never discards a newer one's store).
    private static func isNewer(_ format: String) -> Bool {
        guard format.hasPrefix("outpost-store/"), let version = Int(format.dropFirst("outpost-store/".count)) else {
            return false
        }
        return version > Int(StoreFormat.identifier.dropFirst("outpost-store/".count))!
    }

    /// The refusal for a store whose format is not this version's.
    private static func formatError(path: String, found: String) -> StoreError {
        if isNewer(found) || found == "none" {
            return .incompatibleFormat(path: path, found: found, expected: StoreFormat.identifier)
        }
        return .damaged(
            path: path,
            reason: "record format \"\(found)\" has no checksums (this Outpost reads \"\(StoreFormat.identifier)\")")
    }

    private static func openSchema(
        _ environment: LMDBEnvironment, _ configuration: StoreConfiguration
    ) throws -> (Schema, StoreWriter?) {
        let path = configuration.path
        if configuration.readOnly {
            let schema: Schema
            do {
                schema = try Schema(environment: environment, create: false)
            } catch {
                throw StoreError.notAStore(path: path, reason: "missing the Outpost databases")
            }
            let meta = schema.meta
            let found = try environment.read { try $0.get(meta, formatKey) }.map { String(decoding: $0, as: UTF8.self) }
            guard let found, found == StoreFormat.identifier else {
                throw formatError(path: path, found: found ?? "none")
            }
            return (schema, nil)
        }
        let schema = try Schema(environment: environment, create: true)
        // Start-up reads what it can and writes only what it must, and a full disk does not
        // stop it: a known store with chunks left by an interrupted write is swept when there
        // is room, or on a later start.
        let (format, interrupted, usage) = try environment.read { txn -> (String?, [UInt64], StoreUsage) in
            let format = try txn.get(schema.meta, formatKey).map { String(decoding: $0, as: UTF8.self) }
            var interrupted: [UInt64] = []
            try txn.scan(schema.pending) { key, _ in
                var reader = RecordReader(key, context: "pending key")
                interrupted.append(try reader.u64())
                return true
            }
            do {
                return (format, interrupted, try schema.usage(txn))
            } catch let error as StoreError {
                throw StoreError.damaged(path: path, reason: "the usage record: \(error)")
            }
        }
        if let format {
            guard format == StoreFormat.identifier else { throw formatError(path: path, found: format) }
        } else {
            try environment.write { txn in
                guard try txn.count(schema.objects) == 0, try txn.count(schema.entries) == 0 else {
                    throw formatError(path: path, found: "none")
                }
                try txn.put(schema.meta, formatKey, Array(StoreFormat.identifier.utf8))
            }
        }
        if !interrupted.isEmpty {
            do {
                try environment.write { txn in
                    for id in interrupted { try schema.removeChunks(txn, id: id) }
                }
            } catch let error as LMDBError where error.isDiskFull || error.isMapFull {
                // Left for a later start; the chunks are unreachable meanwhile.
            }
        }
        DiskReserve.create(storePath: path, bytes: configuration.diskReserve)
        // The ballast (Schema.putBallast), when there is room for it; a full disk goes without.
        try? environment.write { txn in try schema.putBallast(txn) }
        return (
            schema, StoreWriter(environment: environment, schema: schema, configuration: configuration, usage: usage)
        )
    }

    /// Moves a damaged store's files into `damaged-<UTC time>` inside the store directory,
    /// after removing any earlier such directory (one damaged copy is kept for inspection, so
    /// that repeated resets cannot fill the disk). Returns the new directory.
    private static func moveAside(path: String) throws -> String {
        let manager = FileManager.default
        for name in (try? manager.contentsOfDirectory(atPath: path)) ?? [] where name.hasPrefix("damaged-") {
            try? manager.removeItem(atPath: path + "/" + name)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let target = path + "/damaged-" + formatter.string(from: Date())
        try manager.createDirectory(atPath: target, withIntermediateDirectories: true)
        for file in ["data.mdb", "lock.mdb"] where manager.fileExists(atPath: path + "/" + file) {
            try manager.moveItem(atPath: path + "/" + file, toPath: target + "/" + file)
        }
        return target
    }

    /// Stops the writer after the queued work and closes the environment.
    public func close() {
        for session in sessions.withLock({ $0 }) { session.close() }
        writer?.stop()
        if !configuration.readOnly { try? environment.sync() }
        environment.close()
    }

    // MARK: corruption

    /// Damaged values (checksum mismatches, undecodable records) found by reads since the
    /// store opened (`outpost_store_corruptions_total`).
    public var corruptionsDetected: UInt64 { corruptions.withLock { $0.count } }

    /// Who hears of each damaged value a read finds (the server logs it); called on the
    /// reading thread, so it must not block.
    public func onCorruption(_ handler: @escaping @Sendable (StoreCorruption) -> Void) {
        corruptions.withLock { $0.handler = handler }
    }

    /// A read found a damaged value: it is counted and reported, never used, and what holds it
    /// is removed (so the next request is a miss that stores the origin's bytes anew).
    func reportCorruption(_ corruption: StoreCorruption) {
        let key = corruption.holder
        let (isNew, handler) = corruptions.withLock { state -> (Bool, (@Sendable (StoreCorruption) -> Void)?) in
            guard state.removing.insert(key).inserted else { return (false, nil) }
            state.count += 1
            return (true, state.handler)
        }
        guard isNew else { return }
        handler?(corruption)
        guard let writer else {
            corruptions.withLock { _ = $0.removing.remove(key) }
            return
        }
        pendingRemovals.add(1, ordering: .relaxed)
        writer.enqueue(
            .removeDamaged(
                corruption,
                completion: { [weak self] in
                    // Counted before the key is forgotten: a lookup that no longer finds the key
                    // then sees the count moved.
                    self?.removalsCompleted.add(1, ordering: .releasing)
                    self?.corruptions.withLock { _ = $0.removing.remove(key) }
                    self?.pendingRemovals.subtract(1, ordering: .relaxed)
                }))
    }

    /// Whether a read found damage in this object (its record, its body or one of its codings)
    /// that is not removed yet: a lookup then skips it, so the request is a miss instead of a
    /// response cut short by the same damaged chunk.
    ///
    /// `epoch` is ``removalsCompleted`` read before the lookup's transaction began. When a
    /// removal committed since, the lookup's snapshot may still hold the removed object while
    /// its key has already been forgotten: every object it finds is then skipped (a miss, in
    /// the rare moment a removal commits during a lookup), never handed out.
    /// Hides every object stored before `time` from lookups until ``showAllObjects()``:
    /// they stay stored, and a purge still reaches them.
    public func hideObjects(storedBefore time: Double) {
        servingFloor.store(max(time, Double.leastNonzeroMagnitude).bitPattern, ordering: .releasing)
    }

    public func showAllObjects() { servingFloor.store(0, ordering: .releasing) }

    /// The time before which objects are hidden, nil when none are.
    public var hiddenBefore: Double? {
        let bits = servingFloor.load(ordering: .acquiring)
        return bits == 0 ? nil : Double(bitPattern: bits)
    }

    private func hidden(_ record: ObjectRecord) -> Bool {
        let bits = servingFloor.load(ordering: .relaxed)
        return bits != 0 && record.storedAt < Double(bitPattern: bits)
    }

    /// The sequence number of the last journal purge applied to this store (0: none yet).
    public func journalApplied() throws -> Int64 {
        try environment.read { txn in try schema.journalApplied(txn) }
    }

    private func awaitsRemoval(_ record: ObjectRecord, since epoch: Int) -> Bool {
        if pendingRemovals.load(ordering: .relaxed) > 0 {
            let listed = corruptions.withLock { state in
                state.removing.contains("object \(record.id)") || state.removing.contains("chunks \(record.id)")
                    || record.alternates.contains { state.removing.contains("chunks \($0.chunkOwner)") }
            }
            if listed { return true }
        }
        return removalsCompleted.load(ordering: .acquiring) != epoch
    }

    /// Decodes a record with `body`; a damaged one (``StoreError/corruptRecord(_:)``) is
    /// reported and read as absent.
    func decodeReporting<T>(_ corruption: @autoclosure () -> StoreCorruption, _ body: () throws -> T?) throws -> T? {
        do {
            return try body()
        } catch StoreError.corruptRecord(let what) {
            var report = corruption()
            report.what = what
            reportCorruption(report)
            return nil
        }
    }

    // MARK: reads

    public enum Lookup: Sendable {
        /// Nothing is stored for the URL.
        case noEntry
        /// Responses are stored for the URL, but none was selected by this request's headers.
        case noMatchingVariant
        /// The selected stored response; `body` holds the whole body when it fits in one
        /// chunk (read in the same transaction), nil when it must be streamed chunk by chunk.
        case found(ObjectRecord, body: ByteBuffer?)
    }

    /// Finds the stored response that a request with these headers selects (RFC 9111 §4.1),
    /// newest variant first.
    public func lookup(_ primaryKey: String, requestHeaders: HeaderFields) throws -> Lookup {
        let epoch = removalsCompleted.load(ordering: .acquiring)
        return try environment.read { txn in
            let entry = try decodeReporting(StoreCorruption(primaryKey: primaryKey)) {
                try schema.entry(txn, primaryKey: primaryKey)
            }
            let selection = try select(
                txn, entry: entry, primaryKey: primaryKey, requestHeaders: requestHeaders, removalEpoch: epoch,
                body: { record, _ in try inlineBody(txn, of: record) }
            ) {
                id in try schema.object(txn, id: id).map { ($0, 0) }
            }
            switch selection {
            case .noEntry: return .noEntry
            case .noMatchingVariant: return .noMatchingVariant
            case .found(let record, _, let body): return .found(record, body: body)
            }
        }
    }

    /// The stored response a request selects among an entry's variants (RFC 9111 §4.1), newest
    /// first, skipping a variant whose record or body is not (or no longer) there; for
    /// ``lookup(_:requestHeaders:)`` and the read sessions, which decode records differently.
    /// - Parameters:
    ///   - readsBody: whether to read (and check) a one-chunk body with the record; when not,
    ///     `body` is nil and the caller reads the representation it sends.
    ///   - body: how the body is read: ``inlineBody(_:of:)`` in `txn`, or a copy a session
    ///     kept; nil when the variant must be skipped.
    func select(
        _ txn: LMDBTransaction, entry: EntryRecord?, primaryKey: String, requestHeaders: HeaderFields,
        removalEpoch: Int, readsBody: (ObjectRecord) -> Bool = { _ in true },
        body: (ObjectRecord, _ revision: UInt64) throws -> InlineBody?,
        object: (UInt64) throws -> (ObjectRecord, revision: UInt64)?
    ) throws -> StoreReadSession.Lookup {
        // A digest collision is a miss, never another URL's object.
        guard let entry, entry.primaryKey == primaryKey else { return .noEntry }
        for variant in entry.variants where variant.matches(requestHeaders) {
            let found = try decodeReporting(StoreCorruption(primaryKey: primaryKey, objectID: variant.objectID)) {
                try object(variant.objectID)
            }
            guard let (record, revision) = found, !awaitsRemoval(record, since: removalEpoch), !hidden(record)
            else { continue }
            guard readsBody(record) else { return .found(record, revision: revision, body: nil) }
            guard let inline = try body(record, revision) else { continue }
            return .found(record, revision: revision, body: inline.buffer)
        }
        return .noMatchingVariant
    }

    /// A new read session for one event loop's hits (see ``StoreReadSession``), keeping up to
    /// `hotRecords` decoded records of each kind and `hotBodyBytes` of one-chunk bodies.
    public func makeReadSession(hotRecords: Int, hotBodyBytes: Int = 0) throws -> StoreReadSession {
        let session = try StoreReadSession(store: self, capacity: hotRecords, bodyBudget: hotBodyBytes)
        sessions.withLock { $0.append(session) }
        return session
    }

    /// How a lookup hands out a body: whole when it is one chunk (read in the lookup's
    /// transaction), or to be streamed chunk by chunk.
    enum InlineBody {
        case whole(ByteBuffer)
        case chunked

        var buffer: ByteBuffer? {
            if case .whole(let buffer) = self { return buffer }
            return nil
        }
    }

    /// The body of a one-chunk object, verified and copied once out of the map; nil when the
    /// stored chunk is missing, damaged (reported) or not the length the record says: the
    /// variant is skipped, never served wrong.
    func inlineBody(_ txn: LMDBTransaction, of record: ObjectRecord) throws -> InlineBody? {
        switch record.chunkCount {
        case 0: return .whole(allocator.buffer(capacity: 0))
        case 1:
            let value = try Schema.withChunkKey(record.id, 0) {
                try txn.getSealed(schema.chunks, key: $0, allocator: allocator)
            }
            switch value {
            case .missing: return nil
            case .corrupt:
                reportCorruption(
                    StoreCorruption(
                        what: "body chunk 0: checksum mismatch", primaryKey: record.primaryKey, objectID: record.id))
                return nil
            case .intact(let body):
                guard body.readableBytes == record.bodyLength else {
                    reportCorruption(
                        StoreCorruption(
                            what: "body chunk 0 is \(body.readableBytes) bytes, the record says \(record.bodyLength)",
                            primaryKey: record.primaryKey, objectID: record.id))
                    return nil
                }
                return .whole(body)
            }
        default: return .chunked
        }
    }

    /// A chunk read with its checksum checked: nil when missing or damaged (reported).
    func verifiedChunk(_ value: LMDBTransaction.SealedValue, owner: UInt64, index: Int) -> ByteBuffer? {
        switch value {
        case .missing: return nil
        case .corrupt:
            reportCorruption(StoreCorruption(what: "body chunk \(index): checksum mismatch", chunkOwner: owner))
            return nil
        case .intact(let chunk): return chunk
        }
    }

    /// Every variant stored for a URL (for inspection and for selecting a 304's target).
    public func variants(_ primaryKey: String) throws -> [ObjectRecord] {
        try environment.read { txn in
            guard let entry = try schema.entry(txn, primaryKey: primaryKey) else { return [] }
            return try entry.variants.compactMap { try schema.object(txn, id: $0.objectID) }
        }
    }

    /// One body chunk, verified and copied out of the map; nil when the object is gone or the
    /// chunk is damaged (reported, and the object removed): the caller must then cut the
    /// response, never send other bytes.
    public func readChunk(objectID: UInt64, index: Int) throws -> ByteBuffer? {
        let value = try environment.read { txn in
            try txn.getSealed(schema.chunks, Schema.chunkKey(objectID, index), allocator: allocator)
        }
        return verifiedChunk(value, owner: objectID, index: index)
    }

    public func object(id: UInt64) throws -> ObjectRecord? {
        try environment.read { try schema.object($0, id: id) }
    }

    /// Hits and last access of an object.
    public func accessInfo(id: UInt64) throws -> (hits: UInt64, lastAccess: Double)? {
        try environment.read { try schema.accessRecord($0, id: id) }.map { ($0.hits, $0.lastAccess) }
    }

    /// The hits recorded on the objects now stored (a scan: for inspection, not the hot path).
    public func totalHits() throws -> UInt64 {
        try environment.read { txn in
            var total: UInt64 = 0
            try txn.scan(schema.access) { _, value in
                total += (try? AccessRecord(decoding: value))?.hits ?? 0
                return true
            }
            return total
        }
    }

    /// How many URLs have something stored.
    public func entryCount() throws -> Int {
        try environment.read { try $0.count(schema.entries) }
    }

    /// Store-wide counters (bytes, objects, evictions), as last committed.
    public func usage() throws -> StoreUsage {
        if let writer { return writer.currentUsage }
        return try environment.read { try schema.usage($0) }
    }

    /// Stored primary keys in URL order, as far as `limit`: all of them, those starting with
    /// `prefix`, or those with a variant tagged `tag`.
    public func primaryKeys(prefix: String = "", tag: String? = nil, limit: Int = .max) throws -> [String] {
        guard limit > 0 else { return [] }
        return try environment.read { txn in
            var keys: [String] = []
            if let tag {
                for entry in try schema.entries(txn, tag: tag) where entry.primaryKey.hasPrefix(prefix) {
                    let tagged = try entry.variants.contains { variant in
                        try schema.object(txn, id: variant.objectID)?.tags.contains(tag) ?? false
                    }
                    if tagged { keys.append(entry.primaryKey) }
                }
                return Array(keys.sorted().prefix(limit))
            }
            try schema.entries(txn, prefix: prefix) { entry in
                keys.append(entry.primaryKey)
                return keys.count < limit
            }
            return keys
        }
    }

    /// Purges by URL, prefix or tags: removes (or, soft, marks stale) every variant and coded
    /// representation that matches, in one transaction, durable before it returns. Returns
    /// how many objects it covered.
    @discardableResult
    public func purge(_ purge: Purge) async throws -> Int {
        guard let writer else { throw StoreError.closed }
        return try await withCheckedThrowingContinuation { continuation in
            writer.enqueue(.purge(purge, completion: { continuation.resume(with: $0) }))
        }
    }

    // MARK: writes

    /// Whether the store can write: degraded while the file system refuses its writes.
    public var writeHealth: WriteHealth { writer?.health ?? .ok }

    /// Starts writing a new object. Nothing is visible until ``ObjectWriter/commit(response:requestHeaders:storedAt:)``.
    /// Throws ``StoreError/diskFull(_:)`` while the file system refuses writes, except for one
    /// object every few seconds that finds out whether space came back.
    public func makeObjectWriter(
        primaryKey: String, secondaryKey: String, varyNames: [String], purgeEpoch: UInt64? = nil
    ) throws -> ObjectWriter {
        guard let writer else { throw StoreError.closed }
        guard writer.mayStartObject(now: Date().timeIntervalSince1970) else {
            if case .degraded(let degraded) = writer.health { throw StoreError.diskFull(degraded.reason) }
            throw StoreError.diskFull("the file system refuses writes")
        }
        return ObjectWriter(
            writer: writer, id: writer.allocateObjectID(), primaryKey: primaryKey, secondaryKey: secondaryKey,
            varyNames: varyNames, configuration: configuration, allocator: allocator,
            purgeEpoch: purgeEpoch ?? writer.purgeEpoch)
    }

    /// Starts writing other codings of the stored object `objectID`: open a stream per coding
    /// with ``ObjectWriter/addAlternate(coding:)``, append, then
    /// ``ObjectWriter/commitAlternates()``. Hits see the codings once that commits.
    public func makeAlternateWriter(objectID: UInt64) throws -> ObjectWriter {
        guard let writer else { throw StoreError.closed }
        return ObjectWriter(
            writer: writer, id: objectID, primaryKey: "", secondaryKey: "", varyNames: [],
            configuration: configuration, allocator: allocator, purgeEpoch: writer.purgeEpoch,
            isAlternateWriter: true)
    }

    /// Removes every stored response for these URLs (RFC 9111 §4.4). Returns how many objects went.
    @discardableResult
    public func invalidate(_ primaryKeys: [String]) async throws -> Int {
        guard let writer else { throw StoreError.closed }
        return try await withCheckedThrowingContinuation { continuation in
            writer.enqueue(.invalidate(primaryKeys, completion: { continuation.resume(with: $0) }))
        }
    }

    /// Replaces an object's stored response (after a 304, RFC 9111 §4.3.4). False when the
    /// object is gone.
    ///
    /// - Parameter purgeEpoch: ``purgeEpoch`` when the validation began; a purge covering the
    ///   object since then keeps it marked stale. Nil: now.
    @discardableResult
    public func update(objectID: UInt64, response: StoredResponse, purgeEpoch: UInt64? = nil) async throws -> Bool {
        guard let writer else { throw StoreError.closed }
        let epoch = purgeEpoch ?? writer.purgeEpoch
        return try await withCheckedThrowingContinuation { continuation in
            writer.enqueue(
                .update(
                    id: objectID, response: response, purgeEpoch: epoch, completion: { continuation.resume(with: $0) }))
        }
    }

    /// The number of purges so far. A fetch reads it before it asks the origin, and hands it to
    /// ``makeObjectWriter(primaryKey:secondaryKey:varyNames:purgeEpoch:)`` or
    /// ``update(objectID:response:purgeEpoch:)``, so that a purge landing while the origin
    /// answers is not undone by what it answered.
    public var purgeEpoch: UInt64 { writer?.purgeEpoch ?? 0 }

    /// Whether a purge since ``purgeEpoch`` was `epoch` covers `record`, an object still being
    /// written: its bytes must then not be served as they are (they may predate the purge).
    public func purged(_ record: ObjectRecord, since epoch: UInt64) -> Bool {
        writer?.purged(record, since: epoch) ?? true
    }

    /// Notes a hit for the LRU order and the hit counter; never blocks.
    public func recordHit(objectID: UInt64, at time: Double) {
        writer?.recordHits([objectID: (1, time)])
    }

    /// Notes hits gathered by an event loop since its last report (count and latest time per
    /// object), so that hits touch the writer's shared state once per batch, not per hit.
    public func recordHits(_ hits: [UInt64: (count: Int, last: Double)]) {
        writer?.recordHits(hits)
    }

    /// Returns once everything enqueued before it is committed.
    public func flush() async {
        guard let writer else { return }
        await withCheckedContinuation { continuation in
            writer.enqueue(.barrier({ continuation.resume() }))
        }
    }
}
