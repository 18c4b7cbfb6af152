import HTTPCaching
import NIOCore
import Testing

@testable import CacheStore
@testable import CacheTransaction

/// The body followers read while it streams in: what a position gives, and what memory holds.
@Suite("CacheTransaction: a body shared while it streams in")
struct LiveBodyTests {
    /// A body of 40 bytes in chunks of 10.
    static func body() -> LiveBody {
        let response = StoredResponse(status: 200, headers: HeaderFields(), requestTime: 0, responseTime: 0)
        let record = ObjectRecord(
            id: 9, primaryKey: "http://site.test/b", secondaryKey: "", response: response, storedAt: 0,
            bodyLength: 40, chunkSize: 10, chunkCount: 4)
        return LiveBody(
            record: record, variant: VariantRef(objectID: 9, secondaryKey: "", varyNames: []), purgeEpoch: 0)
    }

    /// Waits, polling, until `condition` holds (false after 10 s).
    static func until(_ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(1))
        }
        return true
    }

    static func bytes(_ read: LiveBody.Read) -> String? {
        if case .bytes(let buffer) = read { return String(buffer: buffer) }
        return nil
    }

    @Test("bytes from memory until their chunk commits, then from the store; memory holds only what is not committed")
    func positions() async {
        let live = Self.body()
        live.append(ByteBuffer(string: "aaaaaaaaaa"))  // 0-9
        live.append(ByteBuffer(string: "bbbbbbbbbbcc"))  // 10-21
        #expect(Self.bytes(await live.read(at: 5)) == "aaaaa")
        #expect(Self.bytes(await live.read(at: 12)) == "bbbbbbbbcc")
        #expect(live.heldBytes == 22)
        // Chunk 1 reported before chunk 0 (never done by the store, which reports in order):
        // nothing is dropped until chunk 0 is committed too.
        live.chunkDurable(1)
        #expect(live.heldBytes == 22)
        #expect(Self.bytes(await live.read(at: 0)) == "aaaaaaaaaa")
        live.chunkDurable(0)
        // The piece 0-9 is gone; 10-21 is kept for 20-21, which no committed chunk holds yet.
        #expect(live.heldBytes == 12)
        #expect(await live.read(at: 3) == .stored(chunk: 0))
        #expect(await live.read(at: 19) == .stored(chunk: 1))
        #expect(Self.bytes(await live.read(at: 20)) == "cc")
    }

    @Test("a reader past what arrived waits for the next piece, and learns of the end or a failure")
    func waiting() async throws {
        let live = Self.body()
        live.append(ByteBuffer(string: "0123456789"))
        async let next = live.read(at: 10)
        // Nothing is at 10 yet: the reader waits for the next piece.
        #expect(try await Self.until { live.waiting.readers == 1 })
        live.append(ByteBuffer(string: "abc"))
        #expect(Self.bytes(await next) == "abc")
        live.complete()
        #expect(await live.read(at: 13) == .end)
        #expect(Self.bytes(await live.read(at: 12)) == "c")

        let broken = Self.body()
        broken.append(ByteBuffer(string: "0123"))
        async let parked = broken.read(at: 4)
        #expect(try await Self.until { broken.waiting.readers == 1 })
        broken.fail()
        #expect(await parked == .failed)
        #expect(await broken.read(at: 0) == .failed)
        #expect(broken.heldBytes == 0)
    }

    @Test("followers that cannot use the body wait for how the leader's fetch ended")
    func settles() async throws {
        let live = Self.body()
        async let outcome = live.settled()
        #expect(try await Self.until { live.waiting.outcome == 1 })
        live.settle(.stored)
        live.settle(.notStored)  // only the first counts
        #expect(await outcome == .stored)
        #expect(await live.settled() == .stored)
    }

    @Test("a body that broke off is not handed to new followers: they wait for the leader's end")
    func failedNotHandedOut() async throws {
        let coalescer = Coalescer(uncacheableTTL: 0)
        let key = "http://site.test/b"
        guard case .leader = coalescer.role(for: key, now: 0) else {
            Issue.record("the first request for a key leads")
            return
        }
        let live = Self.body()
        coalescer.publish(key, body: live)
        #expect(await coalescer.wait(for: key) == .streaming(live))
        live.fail()
        async let later = coalescer.wait(for: key)
        #expect(try await Self.until { coalescer.waitingCount == 1 })
        coalescer.finish(key, outcome: .notStored, uncacheable: false, now: 0)
        #expect(await later == .notStored)
        #expect(await live.settled() == .notStored)
    }

    @Test("a chunk whose write failed is never counted committed: what follows it stays in memory")
    func lostChunk() async {
        let live = Self.body()
        live.append(ByteBuffer(string: String(repeating: "a", count: 30)))
        // Chunk 0 lost (no report), chunks 1 and 2 committed: nothing may be dropped, since
        // bytes 0-9 can be read neither from the store nor from anywhere else.
        live.chunkDurable(1)
        live.chunkDurable(2)
        #expect(live.heldBytes == 30)
        #expect(Self.bytes(await live.read(at: 0)) == String(repeating: "a", count: 30))
    }
}
