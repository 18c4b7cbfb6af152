import CacheStore
import Foundation
import HTTPCaching
import NIOCore
import OutpostTestSupport
import Testing

/// A fresh store directory under the system temporary directory, removed by `cleanup`.
struct TemporaryStore {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "outpost-store-test-" + UUID().uuidString
    }

    func configuration(maxStoreSize: Int = 64 << 20, chunkSize: Int = 1024, maxVariants: Int = 4) -> StoreConfiguration
    {
        StoreConfiguration(
            path: path, maxStoreSize: maxStoreSize, chunkSize: chunkSize, maxVariants: maxVariants, syncCommits: false)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

func bytes(_ count: Int, seed: UInt8 = 0) -> ByteBuffer {
    ByteBuffer(bytes: pseudoRandomBytes(count, seed: UInt64(seed)))
}

func storedResponse(_ fields: [(String, String)] = [("Cache-Control", "max-age=60")]) -> StoredResponse {
    StoredResponse(status: 200, headers: HeaderFields(fields), requestTime: 100, responseTime: 101)
}

/// Writes an object through the public API and returns its record.
@discardableResult
func put(
    _ store: CacheStore, _ key: String, body: ByteBuffer, vary: [String] = [], request: [(String, String)] = [],
    response: StoredResponse = storedResponse(), in pieces: Int = 3
) async throws -> ObjectRecord {
    let requestHeaders = HeaderFields(request)
    let secondary = Vary(fieldNames: vary).secondaryKey(for: requestHeaders)
    let writer = try store.makeObjectWriter(primaryKey: key, secondaryKey: secondary, varyNames: vary)
    var remaining = body
    let piece = max(1, body.readableBytes / pieces)
    while remaining.readableBytes > 0 {
        try await writer.append(remaining.readSlice(length: min(piece, remaining.readableBytes))!)
    }
    return try await writer.commit(response: response, requestHeaders: requestHeaders, storedAt: 200)
}

/// Reads the whole body of a found object, inline or chunk by chunk.
func body(of lookup: CacheStore.Lookup, in store: CacheStore) throws -> ByteBuffer? {
    guard case .found(let record, let inline) = lookup else { return nil }
    if let inline { return inline }
    var all = ByteBuffer()
    for index in 0..<record.chunkCount {
        guard var chunk = try store.readChunk(objectID: record.id, index: index) else { return nil }
        all.writeBuffer(&chunk)
    }
    return all
}

@Suite("CacheStore: LMDB-backed objects")
struct StoreTests {
    @Test("an object round-trips, inline and chunked, byte for byte")
    func roundTrip() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        for size in [0, 10, 1024, 1025, 10_000] {
            let key = "http://h/\(size)"
            let original = bytes(size, seed: UInt8(size % 251))
            let record = try await put(store, key, body: original)
            #expect(record.bodyLength == size)
            let lookup = try store.lookup(key, requestHeaders: HeaderFields())
            #expect(try body(of: lookup, in: store) == original)
        }
        #expect(try store.usage().objects == 5)
    }

    @Test("nothing is visible before commit; abandoned chunks are removed")
    func invisibleUntilCommit() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let writer = try store.makeObjectWriter(primaryKey: "http://h/a", secondaryKey: "", varyNames: [])
        try await writer.append(bytes(5000))
        await store.flush()
        guard case .noEntry = try store.lookup("http://h/a", requestHeaders: HeaderFields()) else {
            Issue.record("object visible before commit")
            return
        }
        writer.abandon()
        await store.flush()
        #expect(try store.readChunk(objectID: writer.id, index: 0) == nil)
    }

    @Test("RFC 9111 §4.1 variants live side by side; a new response replaces only the one it matches")
    func variants() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let key = "http://h/v"
        try await put(
            store, key, body: bytes(10, seed: 1), vary: ["accept-language"], request: [("Accept-Language", "en")])
        try await put(
            store, key, body: bytes(10, seed: 2), vary: ["accept-language"], request: [("Accept-Language", "fr")])
        try await put(
            store, key, body: bytes(10, seed: 3), vary: ["accept-language"], request: [("Accept-Language", "en")])
        #expect(try store.variants(key).count == 2)
        let en = try store.lookup(key, requestHeaders: HeaderFields([("Accept-Language", "en")]))
        let fr = try store.lookup(key, requestHeaders: HeaderFields([("Accept-Language", "fr")]))
        #expect(try body(of: en, in: store) == bytes(10, seed: 3))
        #expect(try body(of: fr, in: store) == bytes(10, seed: 2))
        guard case .noMatchingVariant = try store.lookup(key, requestHeaders: HeaderFields([("Accept-Language", "de")]))
        else {
            Issue.record("expected a vary miss")
            return
        }
    }

    @Test("max_variants keeps the newest variants")
    func variantCap() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration(maxVariants: 2))
        defer { store.close() }
        for language in ["a", "b", "c"] {
            try await put(store, "http://h/cap", body: bytes(10), vary: ["x"], request: [("X", language)])
        }
        let variants = try store.variants("http://h/cap")
        #expect(variants.count == 2)
        guard case .noMatchingVariant = try store.lookup("http://h/cap", requestHeaders: HeaderFields([("X", "a")]))
        else {
            Issue.record("the oldest variant should be gone")
            return
        }
        #expect(try store.usage().objects == 2)
    }

    @Test("RFC 9111 §4.4 invalidation removes every variant and its chunks")
    func invalidate() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let one = try await put(store, "http://h/i", body: bytes(5000), vary: ["x"], request: [("X", "1")])
        try await put(store, "http://h/i", body: bytes(10), vary: ["x"], request: [("X", "2")])
        #expect(try await store.invalidate(["http://h/i", "http://h/none"]) == 2)
        #expect(try store.variants("http://h/i").isEmpty)
        #expect(try store.readChunk(objectID: one.id, index: 0) == nil)
        #expect(try store.usage().bytes == 0)
        #expect(try store.usage().objects == 0)
    }

    @Test("RFC 9111 §4.3.4 a stored response is updated in place after a 304")
    func update() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let record = try await put(store, "http://h/u", body: bytes(100))
        var updated = record.response
        updated.headers.replace("Cache-Control", with: "max-age=999")
        updated.responseTime = 500
        #expect(try await store.update(objectID: record.id, response: updated))
        guard case .found(let found, _) = try store.lookup("http://h/u", requestHeaders: HeaderFields()) else {
            Issue.record("object lost")
            return
        }
        #expect(found.response.headers["Cache-Control"] == "max-age=999")
        #expect(found.response.responseTime == 500)
        #expect(try await store.update(objectID: 999_999, response: updated) == false)
    }

    @Test("objects, validators and times survive a restart")
    func persistence() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        do {
            let store = try CacheStore(configuration: dir.configuration())
            try await put(store, "http://h/p", body: bytes(3000))
            store.close()
        }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let lookup = try store.lookup("http://h/p", requestHeaders: HeaderFields())
        #expect(try body(of: lookup, in: store) == bytes(3000))
        guard case .found(let record, _) = lookup else { return }
        #expect(record.response.requestTime == 100)
        #expect(record.response.responseTime == 101)
        #expect(record.response.headers["Cache-Control"] == "max-age=60")
    }

    @Test("chunks of an object interrupted before commit are swept on open")
    func interruptedWrite() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        var orphan: UInt64 = 0
        do {
            let store = try CacheStore(configuration: dir.configuration())
            let writer = try store.makeObjectWriter(primaryKey: "http://h/torn", secondaryKey: "", varyNames: [])
            try await writer.append(bytes(4096))
            orphan = writer.id
            await store.flush()
            #expect(try store.readChunk(objectID: orphan, index: 0) != nil)
            // Simulates a crash: the writer is never committed or abandoned.
            store.close()
        }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        #expect(try store.readChunk(objectID: orphan, index: 0) == nil)
        guard case .noEntry = try store.lookup("http://h/torn", requestHeaders: HeaderFields()) else {
            Issue.record("a torn object is visible")
            return
        }
    }

    @Test("the store stays under max_store_size, evicting least recently used first")
    func eviction() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let limit = 200_000
        let store = try CacheStore(configuration: dir.configuration(maxStoreSize: limit, chunkSize: 16 << 10))
        defer { store.close() }
        try await put(store, "http://h/keep", body: bytes(20_000))
        for index in 0..<30 {
            // Keep one object hot so that LRU, not FIFO, decides.
            if case .found(let record, _) = try store.lookup("http://h/keep", requestHeaders: HeaderFields()) {
                store.recordHit(objectID: record.id, at: Double(300 + index))
            }
            try await put(store, "http://h/\(index)", body: bytes(20_000))
            await store.flush()
            #expect(try store.usage().bytes <= UInt64(limit))
        }
        #expect(try store.usage().evictions > 0)
        guard case .found = try store.lookup("http://h/keep", requestHeaders: HeaderFields()) else {
            Issue.record("the most recently used object was evicted")
            return
        }
        guard case .noEntry = try store.lookup("http://h/0", requestHeaders: HeaderFields()) else {
            Issue.record("the least recently used object survived")
            return
        }
        let keep = try #require(try store.variants("http://h/keep").first)
        let access = try #require(try store.accessInfo(id: keep.id))
        #expect(access.hits == 30)
    }

    // LMDB forbids opening one environment twice in a process, so this opens read-only after
    // the writer closed; an inspection tool reads beside a running server from another process.
    @Test("a read-only opener sees committed objects and cannot write")
    func readOnly() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        try await put(store, "http://h/ro", body: bytes(50))
        store.close()
        var readOnly = dir.configuration()
        readOnly.readOnly = true
        let inspector = try CacheStore(configuration: readOnly)
        defer { inspector.close() }
        #expect(try inspector.primaryKeys() == ["http://h/ro"])
        #expect(try inspector.usage().objects == 1)
        #expect(throws: StoreError.self) {
            try inspector.makeObjectWriter(primaryKey: "x", secondaryKey: "", varyNames: [])
        }
    }

    @Test("a store of another format, or not a store at all, is refused with a clear message")
    func refusesIncompatible() throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: dir.path + "/data.mdb"))
        #expect {
            try CacheStore(configuration: dir.configuration())
        } throws: { error in
            guard let error = error as? StoreError, case .notAStore = error else { return false }
            return error.description.contains(dir.path)
        }
        var readOnly = dir.configuration()
        readOnly.readOnly = true
        readOnly.path = dir.path + "-missing"
        #expect(throws: StoreError.self) { try CacheStore(configuration: readOnly) }
    }

    @Test("a new store is created in an empty directory, or one holding only lost+found (a volume's root)")
    func emptyEnough() throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path + "/lost+found", withIntermediateDirectories: true)
        let store = try CacheStore(configuration: dir.configuration())
        store.close()
        #expect(FileManager.default.fileExists(atPath: dir.path + "/data.mdb"))
    }

    @Test("a new store is not created in a directory that holds other files")
    func refusesOccupiedDirectory() throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: dir.path + "/notes.txt"))
        #expect {
            try CacheStore(configuration: dir.configuration())
        } throws: { error in
            guard case .notAStore(_, let reason) = error as? StoreError else { return false }
            return reason.contains("notes.txt")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/data.mdb"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["notes.txt"])
    }

    @Test("keys longer than LMDB's 511-byte limit are stored under their digest")
    func longKeys() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let long = "http://h/" + String(repeating: "x", count: 4000)
        try await put(store, long, body: bytes(10))
        #expect(try body(of: store.lookup(long, requestHeaders: HeaderFields()), in: store) == bytes(10))
        guard case .noEntry = try store.lookup(long + "y", requestHeaders: HeaderFields()) else {
            Issue.record("a different key matched")
            return
        }
    }

    @Test("objects over max_object_size are refused while streaming")
    func objectTooLarge() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        var configuration = dir.configuration()
        configuration.maxObjectSize = 1000
        let store = try CacheStore(configuration: configuration)
        defer { store.close() }
        let writer = try store.makeObjectWriter(primaryKey: "http://h/big", secondaryKey: "", varyNames: [])
        await #expect(throws: StoreError.objectTooLarge(limit: 1000)) { try await writer.append(bytes(1001)) }
        writer.abandon()
    }
}

@Suite("CacheStore: alternate codings")
struct AlternateTests {
    @Test("alternates are written beside the body, survive a restart and go with the object")
    func alternates() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        var alternateOwner: UInt64 = 0
        do {
            let store = try CacheStore(configuration: dir.configuration())
            let writer = try store.makeObjectWriter(primaryKey: "http://h/alt", secondaryKey: "", varyNames: [])
            let stream = writer.addAlternate(coding: "br")
            try await writer.append(bytes(5000, seed: 1))
            try await writer.append(bytes(1500, seed: 2), to: stream)
            let record = try await writer.commit(
                response: storedResponse(), requestHeaders: HeaderFields(), storedAt: 1)
            #expect(record.alternates.count == 1)
            alternateOwner = record.alternates[0].chunkOwner
            store.close()
        }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        guard case .found(let record, _) = try store.lookup("http://h/alt", requestHeaders: HeaderFields()) else {
            Issue.record("object lost")
            return
        }
        let alternate = try #require(record.alternates.first)
        #expect(alternate.coding == "br")
        #expect(alternate.length == 1500)
        var body = ByteBuffer()
        for index in 0..<alternate.chunkCount {
            var chunk = try #require(try store.readChunk(objectID: alternate.chunkOwner, index: index))
            body.writeBuffer(&chunk)
        }
        #expect(body == bytes(1500, seed: 2))
        #expect(try await store.invalidate(["http://h/alt"]) == 1)
        #expect(try store.readChunk(objectID: alternateOwner, index: 0) == nil)
        #expect(try store.usage().bytes == 0)
    }

    @Test("codings added to a stored object later commit at once; for a gone object they are dropped")
    func alternatesAddedLater() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        func stored(_ key: String) async throws -> ObjectRecord {
            let writer = try store.makeObjectWriter(primaryKey: key, secondaryKey: "", varyNames: [])
            try await writer.append(bytes(5000, seed: 1))
            return try await writer.commit(response: storedResponse(), requestHeaders: HeaderFields(), storedAt: 1)
        }
        let kept = try await stored("http://h/later")
        let costBefore = try store.usage().bytes
        let writer = try store.makeAlternateWriter(objectID: kept.id)
        let br = writer.addAlternate(coding: "br")
        let gzip = writer.addAlternate(coding: "gzip")
        try await writer.append(bytes(700, seed: 2), to: br)
        try await writer.append(bytes(900, seed: 3), to: gzip)
        #expect(try await writer.commitAlternates())
        let record = try #require(try store.object(id: kept.id))
        #expect(record.alternates.map(\.coding) == ["br", "gzip"])
        #expect(record.bodyLength == 5000)
        let owner = record.alternates[1].chunkOwner
        #expect(try store.readChunk(objectID: owner, index: 0) == bytes(900, seed: 3))
        #expect(try store.usage().bytes > costBefore)
        // A second job for the same object adds nothing and leaves no chunks behind.
        let again = try store.makeAlternateWriter(objectID: kept.id)
        let extra = again.addAlternate(coding: "br")
        try await again.append(bytes(700, seed: 4), to: extra)
        let extraOwner = again.chunkOwner(of: extra)
        #expect(try await again.commitAlternates() == false)
        #expect(try store.readChunk(objectID: extraOwner, index: 0) == nil)
        // The object purged while it was being coded: the codings are dropped with their chunks.
        let gone = try await stored("http://h/gone-later")
        let late = try store.makeAlternateWriter(objectID: gone.id)
        let lateStream = late.addAlternate(coding: "br")
        try await late.append(bytes(700, seed: 5), to: lateStream)
        #expect(try await store.invalidate(["http://h/gone-later"]) == 1)
        let lateOwner = late.chunkOwner(of: lateStream)
        #expect(try await late.commitAlternates() == false)
        #expect(try store.readChunk(objectID: lateOwner, index: 0) == nil)
        #expect(try await store.invalidate(["http://h/later"]) == 1)
        #expect(try store.readChunk(objectID: owner, index: 0) == nil)
        #expect(try store.usage().bytes == 0)
    }

    @Test("an abandoned writer removes its alternates' chunks too")
    func abandon() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let writer = try store.makeObjectWriter(primaryKey: "http://h/gone", secondaryKey: "", varyNames: [])
        let stream = writer.addAlternate(coding: "gzip")
        try await writer.append(bytes(3000))
        try await writer.append(bytes(3000), to: stream)
        await store.flush()
        let owner = writer.chunkOwner(of: stream)
        #expect(try store.readChunk(objectID: owner, index: 0) != nil)
        writer.abandon()
        await store.flush()
        #expect(try store.readChunk(objectID: writer.id, index: 0) == nil)
        #expect(try store.readChunk(objectID: owner, index: 0) == nil)
    }
}

@Suite("CacheStore: format versions")
struct FormatTests {
    @Test("a store written by a newer, unknown record format is refused, naming both formats, also under reset")
    func unknownFormat() throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        do {
            let environment = try LMDBEnvironment(path: dir.path, mapSize: 64 << 20, maxDatabases: 8, readOnly: false)
            let meta = try environment.openDatabase("meta", create: true)
            try environment.write { try $0.put(meta, Array("format".utf8), Array("outpost-store/9".utf8)) }
            environment.close()
        }
        #expect {
            try CacheStore(configuration: dir.configuration())
        } throws: { error in
            guard let error = error as? StoreError, case .incompatibleFormat(_, let found, let expected) = error else {
                return false
            }
            return found == "outpost-store/9" && expected == "outpost-store/4" && error.description.contains(dir.path)
        }
        // An older Outpost never moves a newer one's store aside.
        var reset = dir.configuration()
        reset.onCorruption = .reset
        #expect(throws: StoreError.self) { try CacheStore(configuration: reset) }
    }
}
