import Foundation
import HTTPCaching
import NIOCore

/// The one writer of a store (LMDB allows one write transaction at a time).
///
/// Callers on any thread enqueue operations; a dedicated thread drains the queue and applies
/// everything waiting in one write transaction, so a burst of chunk writes and commits costs
/// one commit (and one fsync). Completions run after the commit, off the writer thread's
/// transaction. Event loops never wait on it. When the map is full, the writer evicts the
/// least recently used objects and retries the batch once.
final class StoreWriter: @unchecked Sendable {
    enum Operation {
        /// `written`, when set, is told once whether the chunk's write transaction committed
        /// (a follower streaming an object before it commits reads committed chunks from the
        /// store) or failed.
        case putChunk(id: UInt64, index: Int, bytes: ByteBuffer, written: (@Sendable (Bool) -> Void)? = nil)
        case commit(
            ObjectRecord, requestHeaders: HeaderFields, varyNames: [String], purgeEpoch: UInt64,
            completion: @Sendable (Result<Void, Error>) -> Void)
        case discard(id: UInt64)
        case invalidate([String], completion: @Sendable (Result<Int, Error>) -> Void)
        case update(
            id: UInt64, response: StoredResponse, purgeEpoch: UInt64,
            completion: @Sendable (Result<Bool, Error>) -> Void)
        case purge(Purge, completion: @Sendable (Result<Int, Error>) -> Void)
        /// Codings of a stored object produced after it committed (see ``ObjectWriter/commitAlternates()``).
        case addAlternates(id: UInt64, [Alternate], completion: @Sendable (Result<Bool, Error>) -> Void)
        case barrier(@Sendable () -> Void)
        /// Removes what a read found damaged (see ``CacheStore/reportCorruption(_:)``).
        case removeDamaged(StoreCorruption, completion: @Sendable () -> Void)

        var isPurge: Bool {
            if case .purge = self { return true }
            return false
        }

        var byteCount: Int {
            if case .putChunk(_, _, let bytes, _) = self { return bytes.readableBytes }
            return 0
        }
    }

    private let environment: LMDBEnvironment
    private let schema: Schema
    private let configuration: StoreConfiguration
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var queue: [Operation] = []
    private var queuedBytes = 0
    private var spaceWaiters: [(Operation, CheckedContinuation<Void, Never>)] = []
    private var hits: [UInt64: (count: UInt64, last: Double)] = [:]
    private var stopping = false
    private var stopped = false
    private var usageSnapshot: StoreUsage
    private var failedObjects: Set<UInt64> = []
    private var nextObjectID: UInt64
    private var purges = PurgeLog()
    /// Set while the file system refuses the store's writes (see ``WriteHealth``).
    private var diskFull: WriteHealth.Degraded?
    /// What the file system turned out to hold, learned when it first refused a write: the
    /// store keeps its counted bytes below this (as below max_store_size), so the data file
    /// keeps free pages for purges, updates and new objects instead of living at its limit.
    /// Touched only by the writer thread.
    private var learnedCapacity: UInt64?
    /// When the capacity was learned: it is forgotten after ``capacityMemory`` seconds (space
    /// may have come back) and learned again at the next refused write.
    private var learnedAt: Double = 0
    static let capacityMemory: Double = 600

    /// The bytes the store may count: max_store_size, or less on a file system that filled up.
    private var capacity: UInt64 {
        if learnedCapacity != nil, Date().timeIntervalSince1970 - learnedAt > StoreWriter.capacityMemory {
            learnedCapacity = nil
        }
        return min(UInt64(configuration.maxStoreSize), learnedCapacity ?? .max)
    }
    /// Set when the sync after a batch with purges failed; read by that batch's completions
    /// (which run after it is set, on this thread). Replaced for each batch.
    private var syncFailure = SyncFailure()

    final class SyncFailure: @unchecked Sendable {
        var error: Error?
    }

    // Touched only by the writer thread.
    private var usage: StoreUsage

    init(environment: LMDBEnvironment, schema: Schema, configuration: StoreConfiguration, usage: StoreUsage) {
        self.environment = environment
        self.schema = schema
        self.configuration = configuration
        self.usage = usage
        self.usageSnapshot = usage
        self.nextObjectID = usage.nextObjectID
        let thread = Thread { [self] in run() }
        thread.name = "outpost-store-writer"
        thread.start()
    }

    /// A fresh object identifier (never reused, also across restarts).
    func allocateObjectID() -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        let id = nextObjectID
        nextObjectID += 1
        return id
    }

    /// The purge epoch now; an object writer remembers it when it starts.
    var purgeEpoch: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return purges.epoch
    }

    /// Whether a purge since `epoch` covers `record` (hard or soft, or too many purges to
    /// tell): what its write will not commit as it is.
    func purged(_ record: ObjectRecord, since epoch: UInt64) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return purges.verdict(for: record, startEpoch: epoch) != .keep
    }

    /// Whether the store can write (``WriteHealth``).
    var health: WriteHealth {
        condition.lock()
        defer { condition.unlock() }
        return diskFull.map { .degraded($0) } ?? .ok
    }

    /// Whether a new object may be written now: not while the disk is full, except one probe
    /// every `retryInterval` seconds to find out whether space came back.
    func mayStartObject(now: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard var degraded = diskFull else { return true }
        guard now - degraded.lastAttempt >= WriteHealth.retryInterval else { return false }
        degraded.lastAttempt = now
        diskFull = degraded
        return true
    }

    var currentUsage: StoreUsage {
        condition.lock()
        defer { condition.unlock() }
        return usageSnapshot
    }

    func enqueue(_ operation: Operation) {
        condition.lock()
        queue.append(operation)
        queuedBytes += operation.byteCount
        condition.signal()
        condition.unlock()
    }

    /// Enqueues a chunk write, first waiting while too many bytes are already queued so a fast
    /// origin and a slow disk do not pile bodies up in memory.
    func enqueueWithBackpressure(_ operation: Operation) async {
        if tryEnqueue(operation) { return }
        await withCheckedContinuation { continuation in enqueueOrPark(operation, continuation) }
    }

    private func tryEnqueue(_ operation: Operation) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard queuedBytes < configuration.writeQueueLimit || stopped else { return false }
        queue.append(operation)
        queuedBytes += operation.byteCount
        condition.signal()
        return true
    }

    /// Queues the operation now if there is room, or parks it with its continuation until the
    /// writer has drained enough.
    private func enqueueOrPark(_ operation: Operation, _ continuation: CheckedContinuation<Void, Never>) {
        condition.lock()
        if queuedBytes < configuration.writeQueueLimit || stopped {
            queue.append(operation)
            queuedBytes += operation.byteCount
            condition.signal()
            condition.unlock()
            continuation.resume()
        } else {
            spaceWaiters.append((operation, continuation))
            condition.unlock()
        }
    }

    /// Records a hit; applied to the LRU index with the next batch, so a hit never waits.
    func recordHits(_ batch: [UInt64: (count: Int, last: Double)]) {
        condition.lock()
        for (id, hit) in batch {
            let previous = hits[id]
            hits[id] = ((previous?.count ?? 0) + UInt64(hit.count), max(previous?.last ?? 0, hit.last))
        }
        condition.unlock()
    }

    /// Finishes queued work and stops the thread; returns when it has.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        while !stopped { condition.wait() }
        condition.unlock()
    }

    // MARK: the writer thread

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty && hits.isEmpty && !stopping {
                _ = condition.wait(until: Date(timeIntervalSinceNow: 1))
            }
            if queue.isEmpty && hits.isEmpty && stopping && spaceWaiters.isEmpty {
                stopped = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let batch = queue
            let batchHits = hits
            queue = []
            hits = [:]
            condition.unlock()

            let completions = apply(batch, hits: batchHits)

            condition.lock()
            queuedBytes -= batch.reduce(0) { $0 + $1.byteCount }
            usageSnapshot = usage
            // Parked chunk writes join the queue, in order, once there is room again.
            var released: [CheckedContinuation<Void, Never>] = []
            while let (operation, continuation) = spaceWaiters.first,
                queuedBytes < configuration.writeQueueLimit || stopping
            {
                spaceWaiters.removeFirst()
                queue.append(operation)
                queuedBytes += operation.byteCount
                released.append(continuation)
            }
            condition.unlock()
            released.forEach { $0.resume() }
            completions.forEach { $0() }
        }
    }

    /// Applies a batch in one transaction (retrying once after eviction when the map is
    /// full) and returns the completions to run after it committed or failed.
    private func apply(_ batch: [Operation], hits: [UInt64: (count: UInt64, last: Double)]) -> [() -> Void] {
        syncFailure = SyncFailure()
        var lastError: Error?
        for attempt in 0..<2 {
            let before = usage
            condition.lock()
            let purgesBefore = purges
            condition.unlock()
            do {
                var completions: [() -> Void] = []
                try environment.write { txn in
                    for (id, hit) in hits {
                        try schema.touch(txn, id: id, hits: hit.count, at: hit.last, usage: &usage)
                    }
                    for operation in batch { completions.append(try apply(operation, txn)) }
                    usage.nextObjectID = max(usage.nextObjectID, currentNextObjectID())
                    try schema.putUsage(txn, usage)
                }
                if !configuration.syncCommits, batch.contains(where: \.isPurge) {
                    // A purge is durable before it is answered, even when commits are not
                    // synced: a restart must never bring back what it removed. The batch is
                    // committed either way; a failed sync fails the purges' answers only.
                    do {
                        try environment.sync()
                    } catch {
                        syncFailure.error = error
                    }
                }
                if usage.bytes > capacity {
                    try? evict(toBytes: Int(capacity - capacity / 10))
                }
                noteWritesWork(batch)
                return completions
            } catch let error as LMDBError where error.isDiskFull && attempt == 0 {
                usage = before
                condition.lock()
                purges = purgesBefore
                condition.unlock()
                lastError = error
                // The file system is full: give back the reserved space, free pages inside the
                // store by evicting a little in small transactions (a large one needs more new
                // pages than a full disk has), then try once more.
                freeSpace(batchBytes: batch.reduce(0) { $0 + $1.byteCount })
            } catch let error as LMDBError where error.isMapFull && attempt == 0 {
                usage = before
                condition.lock()
                purges = purgesBefore
                condition.unlock()
                lastError = error
                // Free a tenth of the store (or the batch's size, if larger) and try again.
                let batchBytes = UInt64(batch.reduce(0) { $0 + $1.byteCount })
                let target = min(UInt64(configuration.evictionTarget), usage.bytes - min(usage.bytes, batchBytes * 2))
                try? evict(toBytes: Int(target))
            } catch {
                usage = before
                condition.lock()
                purges = purgesBefore
                condition.unlock()
                lastError = error
                break
            }
        }
        // The batch failed: every operation in it fails; objects whose chunks were lost must
        // not commit later. On a full disk the purges in it are applied on their own (they
        // free space, and a purge must not fail for want of it).
        let error = lastError ?? StoreError.full
        if let lmdbError = error as? LMDBError, lmdbError.isDiskFull {
            noteDiskFull(lmdbError)
            return applyAlone(batch, purgesOf: error)
        }
        condition.lock()
        for operation in batch {
            if case .putChunk(let id, _, _, _) = operation { failedObjects.insert(id) }
        }
        condition.unlock()
        return batch.map { operation in fail(operation, error) }
    }

    private func currentNextObjectID() -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return nextObjectID
    }

    /// Removes the chunks written for these owners, and forgets that any of their writes failed.
    private func dropChunks(of owners: [UInt64], _ txn: LMDBTransaction) throws {
        for owner in owners { try schema.removeChunks(txn, id: owner) }
        condition.lock()
        for owner in owners { failedObjects.remove(owner) }
        condition.unlock()
    }

    private func isFailed(_ id: UInt64) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return failedObjects.contains(id)
    }

    private func fail(_ operation: Operation, _ error: Error) -> () -> Void {
        switch operation {
        case .putChunk(_, _, _, let written): return written.map { written in { written(false) } } ?? {}
        case .discard: return {}
        case .removeDamaged(_, let completion): return completion
        case .commit(_, _, _, _, let completion): return { completion(.failure(error)) }
        case .purge(_, let completion): return { completion(.failure(error)) }
        case .invalidate(_, let completion): return { completion(.failure(error)) }
        case .update(_, _, _, let completion): return { completion(.failure(error)) }
        case .addAlternates(_, _, let completion): return { completion(.failure(error)) }
        case .barrier(let completion): return completion
        }
    }

    private func apply(_ operation: Operation, _ txn: LMDBTransaction) throws -> () -> Void {
        switch operation {
        case .putChunk(let id, let index, let bytes, let written):
            if index == 0 { try txn.put(schema.pending, id.bigEndianBytes, []) }
            try txn.putSealed(schema.chunks, Schema.chunkKey(id, index), bytes)
            return written.map { written in { written(true) } } ?? {}

        case .discard(let id):
            try dropChunks(of: [id], txn)
            return {}

        case .removeDamaged(let corruption, let completion):
            try removeDamaged(corruption, txn)
            return completion

        case .commit(var record, let requestHeaders, let varyNames, let purgeEpoch, let completion):
            let owners = [record.id] + record.alternates.map(\.chunkOwner)
            if owners.contains(where: isFailed) {
                try dropChunks(of: owners, txn)
                return { completion(.failure(StoreError.full)) }
            }
            condition.lock()
            let verdict = purges.verdict(for: record, startEpoch: purgeEpoch)
            condition.unlock()
            switch verdict {
            case .drop:
                try dropChunks(of: owners, txn)
                return { completion(.failure(StoreError.purgedWhileWriting)) }
            case .markStale(let time):
                record.softPurgedAt = time
            case .keep:
                break
            }
            try commit(record, requestHeaders: requestHeaders, varyNames: varyNames, txn)
            return { completion(.success(())) }

        case .purge(let purge, let completion):
            let count = try apply(purge, txn)
            if let sequence = purge.journalSequence { try schema.putJournalApplied(txn, sequence) }
            condition.lock()
            purges.record(purge)
            condition.unlock()
            let sync = syncFailure
            return {
                if let error = sync.error {
                    completion(.failure(StoreError.notDurable(error.localizedDescription)))
                } else {
                    completion(.success(count))
                }
            }

        case .invalidate(let keys, let completion):
            var removed = 0
            for key in keys { removed += try schema.removeEntry(txn, primaryKey: key, usage: &usage) }
            return { completion(.success(removed)) }

        case .update(let id, let response, let purgeEpoch, let completion):
            guard var record = try schema.object(txn, id: id) else { return { completion(.success(false)) } }
            // A 304 may carry new Surrogate-Key / Cache-Tag fields: then the entry's tags before
            // the update are read now, before the record changes (most 304s leave them alone).
            let retagged = SurrogateKeys.tags(in: response.headers) != record.tags
            let entry = retagged ? try schema.entry(txn, primaryKey: record.primaryKey) : nil
            let before = entry != nil ? try schema.tags(txn, of: entry) : []
            usage.bytes -= min(usage.bytes, UInt64(record.cost))
            record.response = response
            condition.lock()
            let verdict = purges.verdict(for: record, startEpoch: purgeEpoch)
            condition.unlock()
            switch verdict {
            case .keep:
                // Validated after any soft purge: fresh again (RFC 9111 §4.3.4 freshened it).
                record.softPurgedAt = nil
            case .markStale(let time):
                // A soft purge landed while the validation was under way: it still holds.
                record.softPurgedAt = min(record.softPurgedAt ?? time, time)
            case .drop:
                // A hard purge covering the new response landed meanwhile: keep it stale.
                record.softPurgedAt = record.softPurgedAt ?? record.response.responseTime
            }
            usage.bytes += UInt64(record.cost)
            try txn.put(schema.objects, id.bigEndianBytes, record.encoded())
            if let entry {
                try schema.reindex(txn, primaryKey: record.primaryKey, before: before, entry: entry)
            }
            return { completion(.success(true)) }

        case .addAlternates(let id, let alternates, let completion):
            let owners = alternates.map(\.chunkOwner)
            // The object may have gone (purge, eviction, a newer response) or been coded by an
            // earlier job while this one ran: its chunks are then removed, never left behind.
            guard var record = try schema.object(txn, id: id), record.alternates.isEmpty,
                !owners.contains(where: isFailed)
            else {
                try dropChunks(of: owners, txn)
                return { completion(.success(false)) }
            }
            usage.bytes -= min(usage.bytes, UInt64(record.cost))
            record.alternates = alternates
            usage.bytes += UInt64(record.cost)
            try txn.put(schema.objects, id.bigEndianBytes, record.encoded())
            for owner in owners { try txn.delete(schema.pending, owner.bigEndianBytes) }
            return { completion(.success(true)) }

        case .barrier(let completion):
            return completion
        }
    }

    /// Makes an object visible: its record, LRU position, and its place in the entry, replacing
    /// the variants the producing request selects (RFC 9111 §4.1: a new response replaces only
    /// the variant it matches) and trimming the entry to max_variants.
    private func commit(
        _ record: ObjectRecord, requestHeaders: HeaderFields, varyNames: [String], _ txn: LMDBTransaction
    ) throws {
        let digest = KeyDigest.digest(record.primaryKey)
        var variants: [VariantRef] = []
        var before = Set<String>()
        if let bytes = try txn.get(schema.entries, digest) {
            if let existing = try? EntryRecord(decoding: bytes), existing.primaryKey == record.primaryKey {
                variants = existing.variants
                before = try schema.tags(txn, of: existing)
            } else if let existing = try? EntryRecord(decoding: bytes) {
                // A digest collision or a damaged entry: the newcomer takes the slot.
                let previous = try schema.tags(txn, of: existing)
                for variant in existing.variants { try schema.removeObject(txn, id: variant.objectID, usage: &usage) }
                try schema.reindex(txn, primaryKey: existing.primaryKey, before: previous, entry: nil)
            }
        }
        var kept: [VariantRef] = []
        for variant in variants {
            let selects = Vary(fieldNames: variant.varyNames).secondaryKey(for: requestHeaders) == variant.secondaryKey
            if selects {
                try schema.removeObject(txn, id: variant.objectID, usage: &usage)
            } else {
                kept.append(variant)
            }
        }
        kept.insert(VariantRef(objectID: record.id, secondaryKey: record.secondaryKey, varyNames: varyNames), at: 0)
        while kept.count > max(1, configuration.maxVariants) {
            let dropped = kept.removeLast()
            try schema.removeObject(txn, id: dropped.objectID, usage: &usage)
        }
        let entry = EntryRecord(primaryKey: record.primaryKey, variants: kept)
        try txn.put(schema.entries, digest, entry.encoded())
        try txn.put(schema.objects, record.id.bigEndianBytes, record.encoded())
        // The new record's tags are in hand: only the other variants are read back.
        try schema.reindex(
            txn, primaryKey: record.primaryKey, before: before, entry: entry, knownTags: [record.id: record.tags])
        let tick = usage.nextTick
        usage.nextTick += 1
        try txn.put(
            schema.access, record.id.bigEndianBytes,
            AccessRecord(tick: tick, hits: 0, lastAccess: record.storedAt).encoded())
        try txn.put(schema.lru, Schema.lruKey(tick, record.id), [])
        try txn.delete(schema.pending, record.id.bigEndianBytes)
        for alternate in record.alternates { try txn.delete(schema.pending, alternate.chunkOwner.bigEndianBytes) }
        usage.bytes += UInt64(record.cost)
        usage.objects += 1
    }

    /// Applies a purge inside the batch's transaction; returns how many objects it removed
    /// (or, soft, marked stale).
    private func apply(_ purge: Purge, _ txn: LMDBTransaction) throws -> Int {
        var entries: [EntryRecord] = []
        switch purge.target {
        case .url(let url):
            if let entry = try schema.entry(txn, primaryKey: url) { entries.append(entry) }
        case .prefix(let prefix):
            try schema.entries(txn, prefix: prefix) { entry in
                entries.append(entry)
                return true
            }
        case .tags(let tags):
            var seen = Set<String>()
            for tag in tags {
                for entry in try schema.entries(txn, tag: tag) where seen.insert(entry.primaryKey).inserted {
                    entries.append(entry)
                }
            }
        }
        var count = 0
        for entry in entries {
            var matched: [ObjectRecord] = []
            for variant in entry.variants {
                if let record = try? schema.object(txn, id: variant.objectID), purge.matches(record) {
                    matched.append(record)
                }
            }
            count += matched.count
            if purge.soft {
                for var record in matched where record.softPurgedAt == nil {
                    record.softPurgedAt = purge.time
                    try txn.put(schema.objects, record.id.bigEndianBytes, record.encoded())
                }
            } else if matched.count == entry.variants.count {
                _ = try schema.removeEntry(txn, primaryKey: entry.primaryKey, usage: &usage)
            } else {
                for record in matched {
                    try schema.removeObject(txn, id: record.id, usage: &usage)
                    try schema.unlinkVariant(txn, removed: record)
                }
            }
        }
        return count
    }

    /// Removes what a read found damaged, so that the next request is a miss that stores the
    /// origin's bytes anew: the object (its record may itself be the damaged part), and its
    /// variant in the entry, or the whole entry when the entry record is the damaged part.
    private func removeDamaged(_ corruption: StoreCorruption, _ txn: LMDBTransaction) throws {
        var objectID = corruption.objectID
        if objectID == nil, let owner = corruption.chunkOwner {
            if try txn.get(schema.objects, owner.bigEndianBytes) != nil { objectID = owner }
        }
        if objectID == nil, let owner = corruption.chunkOwner {
            // A coding's chunks: find the object that lists them (rare, so a scan).
            try txn.scan(schema.objects) { key, value in
                guard key.count == 8, let record = try? ObjectRecord(id: 0, decoding: value),
                    record.alternates.contains(where: { $0.chunkOwner == owner })
                else { return true }
                var reader = RecordReader(key, context: "object key")
                objectID = try reader.u64()
                return false
            }
            if objectID == nil { try schema.removeChunks(txn, id: owner) }
        }
        if let id = objectID {
            let removed = try schema.removeObject(txn, id: id, usage: &usage)
            if removed == nil { try schema.removeChunks(txn, id: id) }
            if let removed {
                try schema.unlinkVariant(txn, removed: removed)
            } else if let primaryKey = corruption.primaryKey {
                try schema.unlinkVariant(txn, objectID: id, primaryKey: primaryKey)
            }
        } else if let primaryKey = corruption.primaryKey {
            try schema.removeDamagedEntry(txn, primaryKey: primaryKey)
        }
        try schema.putUsage(txn, usage)
    }

    /// Records that the file system refused a write (the store is degraded until a write of
    /// objects succeeds).
    private func noteDiskFull(_ error: LMDBError) {
        let now = Date().timeIntervalSince1970
        condition.lock()
        var degraded = diskFull ?? WriteHealth.Degraded(reason: "", since: now, failedCommits: 0, lastAttempt: now)
        degraded.reason = "the file system refused a store write: \(error)"
        degraded.failedCommits += 1
        degraded.lastAttempt = now
        diskFull = degraded
        condition.unlock()
    }

    /// A batch that wrote objects committed: the disk takes writes again, and the ballast
    /// given up for it is put back (when there is room).
    private func noteWritesWork(_ batch: [Operation]) {
        guard batch.contains(where: { if case .putChunk = $0 { true } else { false } }) else { return }
        condition.lock()
        let wasDegraded = diskFull != nil
        diskFull = nil
        condition.unlock()
        if wasDegraded || learnedCapacity != nil { try? environment.write { txn in try schema.putBallast(txn) } }
    }

    /// Makes room on a full file system: removes the reserve file (disk space the data file
    /// may grow into) and the ballast value (pages inside it that the next transactions can
    /// reuse), then evicts least recently used objects (at least twice the batch's bytes, or a
    /// twentieth of the store) in transactions of one object each, which need the fewest new
    /// pages.
    private func freeSpace(batchBytes: Int) {
        // From now on the store stays well inside what the disk held.
        let learned = usage.bytes - usage.bytes / 5
        learnedCapacity = min(learnedCapacity ?? .max, max(learned, UInt64(Schema.ballastSize)))
        learnedAt = Date().timeIntervalSince1970
        DiskReserve.release(storePath: configuration.path)
        try? environment.write { txn in try schema.removeBallast(txn) }
        let wanted = max(UInt64(batchBytes) * 2, usage.bytes / 20)
        try? evict(toBytes: Int(usage.bytes - min(usage.bytes, wanted)), perTransaction: 1)
    }

    /// After a batch failed on a full disk: the purges and invalidations in it (with the
    /// barriers) are applied in a transaction of their own; everything else fails.
    private func applyAlone(_ batch: [Operation], purgesOf error: Error) -> [() -> Void] {
        let removals = batch.filter {
            switch $0 {
            case .purge, .invalidate, .removeDamaged, .discard: true
            default: false
            }
        }
        // The chunks already written for objects whose commit fails now would stay behind,
        // unreachable and uncounted: they go in the same transaction.
        var abandoned: [UInt64] = []
        for operation in batch {
            switch operation {
            case .commit(let record, _, _, _, _): abandoned += [record.id] + record.alternates.map(\.chunkOwner)
            case .addAlternates(_, let alternates, _): abandoned += alternates.map(\.chunkOwner)
            default: break
            }
        }
        var applied: [() -> Void] = []
        if !removals.isEmpty || !abandoned.isEmpty {
            let before = usage
            condition.lock()
            let purgesBefore = purges
            condition.unlock()
            do {
                try environment.write { txn in
                    for operation in removals { applied.append(try apply(operation, txn)) }
                    try dropChunks(of: abandoned, txn)
                    try schema.putUsage(txn, usage)
                }
                if !configuration.syncCommits {
                    do {
                        try environment.sync()
                    } catch {
                        syncFailure.error = error
                    }
                }
            } catch {
                usage = before
                condition.lock()
                purges = purgesBefore
                condition.unlock()
                applied = []
            }
        }
        condition.lock()
        for operation in batch {
            if case .putChunk(let id, _, _, _) = operation { failedObjects.insert(id) }
        }
        condition.unlock()
        let wentThrough = !applied.isEmpty
        return batch.map { operation in
            switch operation {
            case .purge, .invalidate, .removeDamaged, .discard: return wentThrough ? {} : fail(operation, error)
            default: return fail(operation, error)
            }
        } + applied
    }

    /// Removes least recently used objects until the store counts at most `target` bytes,
    /// in transactions of bounded size so readers and the queue are never held up for long.
    private func evict(toBytes target: Int, perTransaction: Int = 256) throws {
        while usage.bytes > UInt64(max(0, target)) {
            let before = usage
            var removedAny = false
            do {
                try environment.write { txn in
                    var victims: [(UInt64, UInt64)] = []
                    try txn.scan(schema.lru) { key, _ in
                        var reader = RecordReader(key, context: "lru key")
                        victims.append((try reader.u64(), try reader.u64()))
                        return victims.count < perTransaction
                    }
                    for (tick, id) in victims {
                        guard usage.bytes > UInt64(max(0, target)) else { break }
                        if let record = try schema.removeObject(txn, id: id, usage: &usage) {
                            try schema.unlinkVariant(txn, removed: record)
                            usage.evictions += 1
                        }
                        try txn.delete(schema.lru, Schema.lruKey(tick, id))
                        removedAny = true
                    }
                    try schema.putUsage(txn, usage)
                }
            } catch {
                usage = before
                throw error
            }
            if !removedAny { return }
        }
    }
}
