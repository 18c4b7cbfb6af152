import CacheStore
import Foundation
import HTTPCaching
import NIOCore
import Testing

/// An event loop's read session: one reused transaction, records kept decoded while their
/// bytes in the map are unchanged, and never an out-of-date record.
@Suite("CacheStore: read sessions")
struct ReadSessionTests {
    @Test("a session finds what a lookup finds, variants and bodies included")
    func sameAsLookup() async throws {
        let directory = TemporaryStore()
        defer { directory.cleanup() }
        let store = try CacheStore(configuration: directory.configuration(chunkSize: 1024))
        defer { store.close() }
        try await put(store, "http://h/small", body: bytes(300))
        try await put(store, "http://h/large", body: bytes(5000))
        try await put(
            store, "http://h/v", body: bytes(10, seed: 1), vary: ["accept-language"],
            request: [("Accept-Language", "en")])
        try await put(
            store, "http://h/v", body: bytes(10, seed: 2), vary: ["accept-language"],
            request: [("Accept-Language", "de")])
        let session = try store.makeReadSession(hotRecords: 8)
        for _ in 0..<3 {
            guard
                case .found(let small, _, let inline) = try session.lookup(
                    "http://h/small", requestHeaders: HeaderFields())
            else {
                Issue.record("small not found")
                return
            }
            #expect(small.bodyLength == 300)
            #expect(inline == bytes(300))
            guard
                case .found(let large, _, let none) = try session.lookup(
                    "http://h/large", requestHeaders: HeaderFields())
            else {
                Issue.record("large not found")
                return
            }
            #expect(none == nil)
            var all = ByteBuffer()
            for index in 0..<large.chunkCount {
                var chunk = try #require(try session.readChunk(objectID: large.id, index: index))
                all.writeBuffer(&chunk)
            }
            #expect(all == bytes(5000))
            for (language, seed) in [("de", UInt8(2)), ("en", 1)] {
                guard
                    case .found(_, _, let body) = try session.lookup(
                        "http://h/v", requestHeaders: HeaderFields([("Accept-Language", language)]))
                else {
                    Issue.record("variant \(language) not found")
                    return
                }
                #expect(body == bytes(10, seed: seed))
            }
            let fr = try session.lookup("http://h/v", requestHeaders: HeaderFields([("Accept-Language", "fr")]))
            guard case .noMatchingVariant = fr else {
                Issue.record("expected no matching variant, got \(fr)")
                return
            }
            guard case .noEntry = try session.lookup("http://h/none", requestHeaders: HeaderFields()) else {
                Issue.record("expected no entry")
                return
            }
        }
    }

    @Test("a record changed in the store is read anew, with a new revision")
    func changedRecords() async throws {
        let directory = TemporaryStore()
        defer { directory.cleanup() }
        let store = try CacheStore(configuration: directory.configuration())
        defer { store.close() }
        let record = try await put(store, "http://h/a", body: bytes(100))
        let session = try store.makeReadSession(hotRecords: 1)
        guard case .found(let first, let revision, _) = try session.lookup("http://h/a", requestHeaders: HeaderFields())
        else {
            Issue.record("not found")
            return
        }
        guard case .found(_, let same, _) = try session.lookup("http://h/a", requestHeaders: HeaderFields()) else {
            Issue.record("not found")
            return
        }
        #expect(same == revision)
        #expect(first.response.headers["Cache-Control"] == "max-age=60")
        // A 304 rewrites the record under the same id.
        try await store.update(
            objectID: record.id, response: storedResponse([("Cache-Control", "max-age=999")]))
        await store.flush()
        guard case .found(let updated, let next, _) = try session.lookup("http://h/a", requestHeaders: HeaderFields())
        else {
            Issue.record("not found after update")
            return
        }
        #expect(updated.id == record.id)
        #expect(next != revision)
        #expect(updated.response.headers["Cache-Control"] == "max-age=999")
        // Replaced by a new object, then removed.
        try await put(store, "http://h/a", body: bytes(7))
        guard case .found(let replaced, _, let body) = try session.lookup("http://h/a", requestHeaders: HeaderFields())
        else {
            Issue.record("not found after replace")
            return
        }
        #expect(replaced.id != record.id)
        #expect(body == bytes(7))
        try await store.invalidate(["http://h/a"])
        guard case .noEntry = try session.lookup("http://h/a", requestHeaders: HeaderFields()) else {
            Issue.record("found after invalidation")
            return
        }
    }

    @Test("closing the store ends its sessions")
    func closedStore() async throws {
        let directory = TemporaryStore()
        defer { directory.cleanup() }
        let store = try CacheStore(configuration: directory.configuration())
        try await put(store, "http://h/a", body: bytes(100))
        let session = try store.makeReadSession(hotRecords: 4)
        _ = try session.lookup("http://h/a", requestHeaders: HeaderFields())
        store.close()
        #expect(throws: StoreError.self) { try session.lookup("http://h/a", requestHeaders: HeaderFields()) }
        #expect(throws: StoreError.self) { try session.readChunk(objectID: 1, index: 0) }
    }
}
