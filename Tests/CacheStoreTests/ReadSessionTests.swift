import CacheStore
import Foundation
import HTTPCaching
import NIOCore
import Testing

/// An event loop's read session: one reused transaction, records kept decoded while their
/// bytes in the map are unchanged, and never an out-of-date record.
@Suite("CacheStore: read sessions")
struct ReadSessionTests {
    @Test("a session finds what a lookup finds, variants and bodies included", arguments: [0, 1 << 20])
    func sameAsLookup(hotBodyBytes: Int) async throws {
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
        let session = try store.makeReadSession(hotRecords: 8, hotBodyBytes: hotBodyBytes)
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

    @Test("a record changed in the store is read anew, with a new revision", arguments: [0, 1 << 20])
    func changedRecords(hotBodyBytes: Int) async throws {
        let directory = TemporaryStore()
        defer { directory.cleanup() }
        let store = try CacheStore(configuration: directory.configuration())
        defer { store.close() }
        let record = try await put(store, "http://h/a", body: bytes(100))
        let session = try store.makeReadSession(hotRecords: 1, hotBodyBytes: hotBodyBytes)
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

    @Test("a kept body is sent while its record is unchanged; a session without one reads and checks the chunk")
    func keptBodies() async throws {
        let directory = TemporaryStore()
        defer { directory.cleanup() }
        let store = try CacheStore(configuration: directory.configuration())
        defer { store.close() }
        let reports = ReportLog()
        store.onCorruption { reports.add($0) }
        let original = randomBody(900)
        try await put(store, "http://h/a", body: original)
        let keeping = try store.makeReadSession(hotRecords: 8, hotBodyBytes: 4096)
        guard case .found(_, _, let first) = try keeping.lookup("http://h/a", requestHeaders: HeaderFields()) else {
            Issue.record("not found")
            return
        }
        #expect(first == original)
        // Damage the stored chunk in place (the map sees it): the keeping session still sends
        // the copy it verified; a session that keeps no body finds the chunk damaged.
        try damageInPlace(directory, at: Array(original.readableBytesView.prefix(64)), offset: 10)
        guard case .found(_, _, let kept) = try keeping.lookup("http://h/a", requestHeaders: HeaderFields()) else {
            Issue.record("not found with a kept body")
            return
        }
        #expect(kept == original)
        #expect(reports.all.isEmpty)
        let reading = try store.makeReadSession(hotRecords: 8)
        let damaged = try reading.lookup("http://h/a", requestHeaders: HeaderFields())
        guard case .noMatchingVariant = damaged else {
            Issue.record("a damaged chunk was served: \(damaged)")
            return
        }
        #expect(reports.all.count == 1)
    }

    @Test("bodies past the budget are dropped and read again, never mixed up")
    func bodyBudget() async throws {
        let directory = TemporaryStore()
        defer { directory.cleanup() }
        let store = try CacheStore(configuration: directory.configuration(chunkSize: 4096))
        defer { store.close() }
        let bodies = [bytes(300, seed: 1), bytes(600, seed: 2), bytes(900, seed: 3), bytes(2000, seed: 4)]
        for (index, body) in bodies.enumerated() { try await put(store, "http://h/\(index)", body: body) }
        // 1000 bytes: never all four; the 2000-byte body is never kept.
        let session = try store.makeReadSession(hotRecords: 8, hotBodyBytes: 1000)
        for round in 0..<4 {
            for index in (0..<bodies.count).shuffled() {
                guard
                    case .found(_, _, let body) = try session.lookup(
                        "http://h/\(index)", requestHeaders: HeaderFields())
                else {
                    Issue.record("round \(round): \(index) not found")
                    return
                }
                #expect(body == bodies[index], "round \(round), body \(index)")
            }
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

/// Flips one byte, `offset` bytes into every place where `marker` occurs in the data file,
/// in place (the open store's map sees it, as it would see a disk that went bad).
private func damageInPlace(_ dir: TemporaryStore, at marker: [UInt8], offset: Int) throws {
    let data = try Data(contentsOf: URL(fileURLWithPath: dataFile(dir)))
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: dataFile(dir)))
    defer { try? handle.close() }
    var from = data.startIndex
    var flipped = 0
    while let found = data.range(of: Data(marker), in: from..<data.endIndex) {
        let position = found.lowerBound + offset
        try handle.seek(toOffset: UInt64(position))
        try handle.write(contentsOf: [data[position] ^ 0xFF])
        flipped += 1
        from = found.upperBound
    }
    #expect(flipped > 0, "marker not found in the data file")
}
