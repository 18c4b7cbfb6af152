import CacheStore
import Foundation
import HTTPCaching
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import CacheTransaction
@testable import EdgeProxy

/// Requests coalesced on a fetch that is storing a body are answered from it as it streams in
/// (``LiveBody``), not after the commit: the pipeline driven against `FakeOrigin`, with a real
/// store whose chunks commit while the body still arrives.
@Suite("EdgeProxy: followers answered from a body as it streams in")
struct LiveFollowerTests {
    /// The store's default chunk size.
    static let chunk = 256 << 10
    static let piece = 64 << 10

    /// Text whose every byte depends on its position, so a byte out of place shows.
    static func text(_ count: Int) -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        return String(decoding: (0..<count).map { letters[($0 / 3 + $0 % 7) % letters.count] }, as: UTF8.self)
    }

    static func headers(_ length: Int) -> [(String, String)] {
        [("Cache-Control", "max-age=60"), ("ETag", "\"big\""), ("Content-Length", "\(length)")]
    }

    /// The body the leader of `path` published, once it has.
    static func liveBody(_ pipeline: CachePipeline, _ path: String) async throws -> LiveBody {
        let key = "http://site.test" + path
        _ = try await eventually { pipeline.coalescer.publishedBody(for: key) != nil }
        return try #require(pipeline.coalescer.publishedBody(for: key))
    }

    /// An origin whose first answer is `streamed` (of `length` bytes) and every later one the
    /// small stored body `then`.
    static func streamingOnce(_ streamed: StreamedBody, length: Int, then: String) -> FakeOrigin {
        let calls = NIOLockedValueBox(0)
        return FakeOrigin { _, _ in
            let first = calls.withLockedValue { calls -> Bool in
                calls += 1
                return calls == 1
            }
            return first
                ? .init(headers: Self.headers(length), streamed: streamed.body)
                : .init(headers: [("Cache-Control", "max-age=60")], body: [then])
        }
    }

    /// Sends `text[range]` in pieces of `piece` bytes.
    static func send(_ streamed: StreamedBody, _ text: String, _ range: Range<Int>) {
        let bytes = Array(text.utf8)
        for start in stride(from: range.lowerBound, to: range.upperBound, by: piece) {
            streamed.send(String(decoding: bytes[start..<min(start + piece, range.upperBound)], as: UTF8.self))
        }
    }

    @Test(
        "a follower gets what arrived (committed chunks from the store, the rest from memory) before the origin sends more; the origin is asked once"
    )
    func followerStreams() async throws {
        let total = 3 * Self.chunk + 1000
        let payload = Self.text(total)
        let streamed = StreamedBody()
        let origin = FakeOrigin { _, _ in .init(headers: Self.headers(total), streamed: streamed.body) }
        try await PipelineFakeOriginTests.withPipeline(origin) { pipeline, _ in
            let leaderSink = RecordingSink()
            async let leader = pipeline.handle(PipelineFakeOriginTests.request("/big"), sink: leaderSink)
            let first = 10 * Self.piece
            Self.send(streamed, payload, 0..<first)
            let live = try await Self.liveBody(pipeline, "/big")
            // Memory holds only what the store has not committed: chunks 0 and 1 (eight
            // pieces) are read from the store from now on.
            #expect(try await eventually { live.heldBytes == first - 2 * Self.chunk })

            let followerSink = RecordingSink()
            async let follower = pipeline.handle(PipelineFakeOriginTests.request("/big"), sink: followerSink)
            #expect(try await eventually { followerSink.response.body.utf8.count == first })
            #expect(followerSink.response.body == String(payload.prefix(first)))
            #expect(followerSink.response.status == 200)
            #expect(followerSink.response.headers["Content-Length"] == "\(total)")
            let status = followerSink.response.headers["Cache-Status"] ?? ""
            #expect(status.contains("; hit") && status.contains("collapsed"), "\(status)")

            Self.send(streamed, payload, first..<total)
            streamed.end()
            let (led, followed) = try await (leader, follower)
            #expect(led.status == 200 && followed.status == 200)
            #expect(leaderSink.response.body == payload)
            #expect(followerSink.response.body == payload && followerSink.response.ended)
            #expect(origin.requests.count == 1)
            #expect(try await PipelineFakeOriginTests.stored(pipeline, "/big"))
            // The last chunk's report follows its commit: memory is empty once it has come.
            #expect(try await eventually { live.heldBytes == 0 })
        }
    }

    @Test("followers' conditions and Range are answered from the streaming body; several ranges wait for the commit")
    func followerAnswers() async throws {
        let total = 2 * Self.chunk
        let payload = Self.text(total)
        let streamed = StreamedBody()
        let origin = FakeOrigin { _, _ in .init(headers: Self.headers(total), streamed: streamed.body) }
        try await PipelineFakeOriginTests.withPipeline(origin) { pipeline, _ in
            async let leader = pipeline.handle(PipelineFakeOriginTests.request("/r"), sink: RecordingSink())
            Self.send(streamed, payload, 0..<Self.piece)
            let live = try await Self.liveBody(pipeline, "/r")

            // RFC 9110 §13.1.2: answered at once, without a byte of the body.
            let notModified = try await PipelineFakeOriginTests.send(
                pipeline, PipelineFakeOriginTests.request("/r", headers: [("If-None-Match", "\"big\"")]))
            #expect(notModified.status == 304)
            // A range inside what arrived: answered before the rest comes.
            let ranged = try await PipelineFakeOriginTests.send(
                pipeline, PipelineFakeOriginTests.request("/r", headers: [("Range", "bytes=100-199")]))
            #expect(
                ranged.status == 206 && ranged.body == String(decoding: Array(payload.utf8)[100..<200], as: UTF8.self))
            #expect(ranged.headers["Content-Range"] == "bytes 100-199/\(total)")

            let multipartSink = RecordingSink()
            async let multipart = pipeline.handle(
                PipelineFakeOriginTests.request("/r", headers: [("Range", "bytes=0-9, 20-29")]), sink: multipartSink)
            // It waits for the leader's end (several ranges are cut from the stored object).
            #expect(try await eventually { live.waiting.outcome == 1 })
            Self.send(streamed, payload, Self.piece..<total)
            streamed.end()
            _ = try await leader
            #expect(try await multipart.status == 206)
            #expect(multipartSink.response.headers["Content-Type"]?.hasPrefix("multipart/byteranges") == true)
            #expect(origin.requests.count == 1)
        }
    }

    @Test(
        "a purge during the fetch withdraws its body: a request after it is not answered with the bytes it may predate")
    func purgeWithdraws() async throws {
        let total = 2 * Self.chunk
        let payload = Self.text(total)
        let streamed = StreamedBody()
        let origin = Self.streamingOnce(streamed, length: total, then: "after the purge")
        try await PipelineFakeOriginTests.withPipeline(origin) { pipeline, _ in
            let leader = Task {
                try await pipeline.handle(PipelineFakeOriginTests.request("/p"), sink: RecordingSink())
            }
            Self.send(streamed, payload, 0..<Self.piece)
            let live = try await Self.liveBody(pipeline, "/p")
            _ = try await pipeline.store.purge(Purge(.url("http://site.test/p"), time: 0))
            let follower = Task {
                try await PipelineFakeOriginTests.send(pipeline, PipelineFakeOriginTests.request("/p"))
            }
            // The follower found the body and, the purge covering it, waits for the leader's end.
            #expect(try await eventually { live.waiting.outcome == 1 })
            Self.send(streamed, payload, Self.piece..<total)
            streamed.end()
            _ = try await leader.value
            // The leader's commit is dropped by the purge; the follower asked the origin itself.
            let followed = try await follower.value
            #expect(followed.body == "after the purge")
            #expect(origin.requests.count == 2)
        }
    }

    @Test("an origin body that breaks off cuts the followers too, and nothing is stored")
    func followerCutWithLeader() async throws {
        let total = 2 * Self.chunk
        let payload = Self.text(total)
        let streamed = StreamedBody()
        let origin = Self.streamingOnce(streamed, length: total, then: "again")
        try await PipelineFakeOriginTests.withPipeline(origin) { pipeline, _ in
            let leader = Task {
                try await pipeline.handle(PipelineFakeOriginTests.request("/cut"), sink: RecordingSink())
            }
            Self.send(streamed, payload, 0..<(Self.chunk + Self.piece))
            _ = try await Self.liveBody(pipeline, "/cut")
            let followerSink = RecordingSink()
            let follower = Task {
                try await pipeline.handle(PipelineFakeOriginTests.request("/cut"), sink: followerSink)
            }
            #expect(try await eventually { followerSink.response.body.utf8.count == Self.chunk + Self.piece })
            streamed.breakOff()
            await #expect(throws: ConnectionAbort.self) { _ = try await leader.value }
            await #expect(throws: ConnectionAbort.self) { _ = try await follower.value }
            #expect(!followerSink.response.ended)
            // Nothing was stored: the next request goes to the origin.
            let next = try await PipelineFakeOriginTests.send(pipeline, PipelineFakeOriginTests.request("/cut"))
            #expect(next.body == "again")
            #expect(origin.requests.count == 2)
        }
    }
}
