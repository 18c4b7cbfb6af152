import CacheStore
import Foundation
import HTTPCaching
import NIOCore
import Testing

func tagged(_ surrogateKey: String? = nil, cacheTag: String? = nil) -> StoredResponse {
    var fields = [("Cache-Control", "max-age=60")]
    if let surrogateKey { fields.append(("Surrogate-Key", surrogateKey)) }
    if let cacheTag { fields.append(("Cache-Tag", cacheTag)) }
    return storedResponse(fields)
}

func isStored(_ store: CacheStore, _ key: String, request: [(String, String)] = []) throws -> Bool {
    if case .found = try store.lookup(key, requestHeaders: HeaderFields(request)) { return true }
    return false
}

@Suite("CacheStore: purge by URL, prefix and tag")
struct PurgeTests {
    @Test("a URL purge removes every variant, every coded representation and their chunks")
    func urlPurge() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        for language in ["en", "fr"] {
            let writer = try store.makeObjectWriter(
                primaryKey: "http://h/page",
                secondaryKey: Vary(fieldNames: ["accept-language"]).secondaryKey(
                    for: HeaderFields([("Accept-Language", language)])), varyNames: ["accept-language"])
            let br = writer.addAlternate(coding: "br")
            try await writer.append(bytes(5000))
            try await writer.append(bytes(900), to: br)
            try await writer.commit(
                response: storedResponse(), requestHeaders: HeaderFields([("Accept-Language", language)]), storedAt: 1)
        }
        try await put(store, "http://h/page2", body: bytes(10))
        let before = try store.usage()
        #expect(before.objects == 3)
        #expect(try await store.purge(Purge(.url("http://h/page"), time: 10)) == 2)
        #expect(try !isStored(store, "http://h/page", request: [("Accept-Language", "en")]))
        #expect(try !isStored(store, "http://h/page", request: [("Accept-Language", "fr")]))
        #expect(try isStored(store, "http://h/page2"))
        #expect(try store.usage().objects == 1)
        #expect(try store.primaryKeys() == ["http://h/page2"])
        #expect(try await store.purge(Purge(.url("http://h/none"), time: 10)) == 0)
    }

    @Test("a prefix purge removes exactly the URLs that start with the prefix, long URLs included")
    func prefixPurge() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let long = "http://h/a/" + String(repeating: "x", count: 600)
        let keys = ["http://h/a/1", "http://h/a/2?q", "http://h/ab", "http://h/b/1", "http://g/a/1", long, long + "y"]
        for key in keys { try await put(store, key, body: bytes(20)) }
        #expect(try store.primaryKeys(prefix: "http://h/a/").count == 4)
        #expect(try store.primaryKeys(prefix: long + "y") == [long + "y"])
        #expect(try await store.purge(Purge(.prefix(long + "y"), time: 1)) == 1)
        #expect(try isStored(store, long))
        #expect(try await store.purge(Purge(.prefix("http://h/a/"), time: 1)) == 3)
        #expect(try store.primaryKeys().sorted() == ["http://g/a/1", "http://h/ab", "http://h/b/1"])
    }

    @Test("a tag purge removes exactly the objects carrying any of the tags, from Surrogate-Key and Cache-Tag")
    func tagPurge() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        try await put(store, "http://h/1", body: bytes(10), response: tagged("product-1 catalog"))
        try await put(store, "http://h/2", body: bytes(10), response: tagged("product-2 catalog"))
        try await put(store, "http://h/3", body: bytes(10), response: tagged(cacheTag: "product-3, catalog"))
        try await put(store, "http://h/4", body: bytes(10), response: tagged("unrelated"))
        try await put(store, "http://h/5", body: bytes(10))
        #expect(try store.primaryKeys(tag: "catalog") == ["http://h/1", "http://h/2", "http://h/3"])
        #expect(try await store.purge(Purge(.tags(["product-1", "product-3"]), time: 1)) == 2)
        #expect(try store.primaryKeys().sorted() == ["http://h/2", "http://h/4", "http://h/5"])
        #expect(try await store.purge(Purge(.tags(["catalog"]), time: 1)) == 1)
        #expect(try store.primaryKeys().sorted() == ["http://h/4", "http://h/5"])
        #expect(try store.primaryKeys(tag: "catalog").isEmpty)
    }

    @Test("a tag purge takes only the variants that carry the tag, and the index follows replacements")
    func tagIndexFollowsVariants() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        try await put(
            store, "http://h/v", body: bytes(10), vary: ["accept-language"], request: [("Accept-Language", "en")],
            response: tagged("english"))
        try await put(
            store, "http://h/v", body: bytes(10), vary: ["accept-language"], request: [("Accept-Language", "fr")],
            response: tagged("french"))
        // The replacement of a variant drops its old tag from the index.
        try await put(store, "http://h/r", body: bytes(10), response: tagged("first"))
        try await put(store, "http://h/r", body: bytes(10), response: tagged("second"))
        #expect(try store.primaryKeys(tag: "first").isEmpty)
        #expect(try store.primaryKeys(tag: "second") == ["http://h/r"])
        #expect(try await store.purge(Purge(.tags(["first"]), time: 1)) == 0)
        #expect(try await store.purge(Purge(.tags(["english"]), time: 1)) == 1)
        #expect(try !isStored(store, "http://h/v", request: [("Accept-Language", "en")]))
        #expect(try isStored(store, "http://h/v", request: [("Accept-Language", "fr")]))
        #expect(try store.primaryKeys(tag: "english").isEmpty)
        #expect(try store.primaryKeys(tag: "french") == ["http://h/v"])
    }

    @Test("a soft purge keeps the objects, marked stale from the purge time; a 304 update clears the mark")
    func softPurge() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let record = try await put(store, "http://h/s", body: bytes(10), response: tagged("t"))
        #expect(try await store.purge(Purge(.tags(["t"]), soft: true, time: 500)) == 1)
        let marked = try #require(try store.variants("http://h/s").first)
        #expect(marked.softPurgedAt == 500)
        #expect(try store.usage().objects == 1)
        // A second soft purge keeps the first time.
        try await store.purge(Purge(.url("http://h/s"), soft: true, time: 900))
        #expect(try store.variants("http://h/s").first?.softPurgedAt == 500)
        try await store.update(objectID: record.id, response: tagged("t"))
        #expect(try store.variants("http://h/s").first?.softPurgedAt == nil)
    }

    @Test("purges are durable: after a restart the purged objects stay purged and soft marks remain")
    func durable() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        do {
            let store = try CacheStore(configuration: dir.configuration())
            try await put(store, "http://h/hard", body: bytes(3000))
            try await put(store, "http://h/soft", body: bytes(10))
            try await store.purge(Purge(.url("http://h/hard"), time: 1))
            try await store.purge(Purge(.url("http://h/soft"), soft: true, time: 2))
            store.close()
        }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        #expect(try !isStored(store, "http://h/hard"))
        #expect(try store.variants("http://h/soft").first?.softPurgedAt == 2)
        #expect(try store.usage().objects == 1)
    }

    @Test("an object whose write began before a purge that covers it does not come back when it commits")
    func inFlightWrite() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let hard = try store.makeObjectWriter(primaryKey: "http://h/late", secondaryKey: "", varyNames: [])
        let soft = try store.makeObjectWriter(primaryKey: "http://h/soft-late", secondaryKey: "", varyNames: [])
        let other = try store.makeObjectWriter(primaryKey: "http://h/other", secondaryKey: "", varyNames: [])
        for writer in [hard, soft, other] { try await writer.append(bytes(3000)) }
        try await store.purge(Purge(.prefix("http://h/late"), time: 5))
        try await store.purge(Purge(.url("http://h/soft-late"), soft: true, time: 6))
        await #expect(throws: StoreError.purgedWhileWriting) {
            try await hard.commit(response: storedResponse(), requestHeaders: HeaderFields(), storedAt: 7)
        }
        try await soft.commit(response: storedResponse(), requestHeaders: HeaderFields(), storedAt: 7)
        try await other.commit(response: storedResponse(), requestHeaders: HeaderFields(), storedAt: 7)
        #expect(try !isStored(store, "http://h/late"))
        #expect(try store.variants("http://h/soft-late").first?.softPurgedAt == 6)
        #expect(try store.variants("http://h/other").first?.softPurgedAt == nil)
        // A write that begins after the purge is kept.
        try await put(store, "http://h/late", body: bytes(10))
        #expect(try isStored(store, "http://h/late"))
    }

    @Test("eviction keeps the tag and URL indexes in step")
    func evictionUnindexes() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration(maxStoreSize: 100_000, chunkSize: 16 << 10))
        defer { store.close() }
        for index in 0..<20 {
            try await put(store, "http://h/\(index)", body: bytes(20_000), response: tagged("all"))
            await store.flush()
        }
        let stored = try store.primaryKeys()
        #expect(stored.count < 20)
        #expect(try store.primaryKeys(tag: "all").sorted() == stored.sorted())
        #expect(try store.primaryKeys(prefix: "http://h/").sorted() == stored.sorted())
    }
}

@Suite("CacheStore: purges racing fetches and validations")
struct PurgeRaceTests {
    @Test("a 304 that brings a new tag indexes it; one that drops a tag unindexes it")
    func updateReindexes() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let record = try await put(store, "http://h/u", body: bytes(10), response: tagged("a"))
        try await store.update(objectID: record.id, response: tagged("a b"))
        #expect(try store.primaryKeys(tag: "b") == ["http://h/u"])
        try await store.update(objectID: record.id, response: tagged("b"))
        #expect(try store.primaryKeys(tag: "a").isEmpty)
        #expect(try await store.purge(Purge(.tags(["b"]), time: 1)) == 1)
        #expect(try !isStored(store, "http://h/u"))
    }

    @Test("a validation that began before a soft purge does not clear it; one that began after does")
    func validationAfterSoftPurge() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let record = try await put(store, "http://h/v", body: bytes(10), response: tagged("t"))
        let began = store.purgeEpoch
        try await store.purge(Purge(.url("http://h/v"), soft: true, time: 50))
        try await store.update(objectID: record.id, response: tagged("t"), purgeEpoch: began)
        #expect(try store.variants("http://h/v").first?.softPurgedAt == 50)
        try await store.update(objectID: record.id, response: tagged("t"), purgeEpoch: store.purgeEpoch)
        #expect(try store.variants("http://h/v").first?.softPurgedAt == nil)
    }

    @Test("a write whose fetch began before a purge is dropped even if the writer starts after it")
    func fetchBeganBeforePurge() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        let began = store.purgeEpoch
        try await store.purge(Purge(.url("http://h/w"), time: 1))
        let writer = try store.makeObjectWriter(
            primaryKey: "http://h/w", secondaryKey: "", varyNames: [], purgeEpoch: began)
        try await writer.append(bytes(10))
        await #expect(throws: StoreError.purgedWhileWriting) {
            try await writer.commit(response: storedResponse(), requestHeaders: HeaderFields(), storedAt: 2)
        }
        #expect(try !isStored(store, "http://h/w"))
    }
}
