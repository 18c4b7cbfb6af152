import CacheStore
import Foundation
import HTTPCaching
import NIOCore
import Testing

/// What the store keeps for a fleet (docs/fleet.md): a local copy's lifetime cap, the last
/// journal purge applied, and objects hidden while a node catches up with the journal.
@Suite("CacheStore: fleet records")
struct FleetStoreTests {
    @Test("a lifetime cap survives the record (and a reopen); a record without one reads as before")
    func lifetimeCap() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        var capped = storedResponse([("Cache-Control", "max-age=600")])
        capped.lifetimeCap = 30
        do {
            let store = try CacheStore(configuration: dir.configuration())
            defer { store.close() }
            try await put(store, "http://h/capped", body: bytes(10), response: capped)
            try await put(store, "http://h/plain", body: bytes(10))
        }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        guard case .found(let record, _) = try store.lookup("http://h/capped", requestHeaders: HeaderFields()),
            case .found(let plain, _) = try store.lookup("http://h/plain", requestHeaders: HeaderFields())
        else {
            Issue.record("both objects are stored")
            return
        }
        #expect(record.response.lifetimeCap == 30)
        #expect(plain.response.lifetimeCap == nil)
        let lifetime = FreshnessLifetime.of(record.response, cacheControl: record.response.cacheControl)
        #expect(lifetime.seconds == 30 && lifetime.source == .maxAge && lifetime.capped)
    }

    @Test("a journal purge records its sequence number with the purge, and it survives a reopen")
    func journalApplied() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        do {
            let store = try CacheStore(configuration: dir.configuration())
            defer { store.close() }
            #expect(try store.journalApplied() == 0)
            try await put(store, "http://h/a", body: bytes(10))
            var purge = Purge(.url("http://h/a"), time: 300)
            purge.journalSequence = 41
            #expect(try await store.purge(purge) == 1)
            // A purge not from the journal leaves the record alone.
            try await store.purge(Purge(.url("http://h/b"), time: 301))
            #expect(try store.journalApplied() == 41)
        }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        #expect(try store.journalApplied() == 41)
    }

    @Test("objects stored before the floor are hidden from lookups (not removed) until shown again")
    func hiding() async throws {
        let dir = TemporaryStore()
        defer { dir.cleanup() }
        let store = try CacheStore(configuration: dir.configuration())
        defer { store.close() }
        // put() stores at 200.
        try await put(store, "http://h/old", body: bytes(10))
        store.hideObjects(storedBefore: 250)
        #expect(store.hiddenBefore == 250)
        if case .found = try store.lookup("http://h/old", requestHeaders: HeaderFields()) {
            Issue.record("an object stored before the floor is served")
        }
        store.hideObjects(storedBefore: 150)
        if case .found = try store.lookup("http://h/old", requestHeaders: HeaderFields()) {
        } else {
            Issue.record("an object stored after the floor is hidden")
        }
        store.hideObjects(storedBefore: 250)
        store.showAllObjects()
        #expect(store.hiddenBefore == nil)
        if case .found = try store.lookup("http://h/old", requestHeaders: HeaderFields()) {
        } else {
            Issue.record("shown again")
        }
    }
}
