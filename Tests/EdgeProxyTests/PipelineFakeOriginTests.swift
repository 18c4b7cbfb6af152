import CacheStore
import Foundation
import HTTPCaching
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import CacheTransaction
@testable import EdgeProxy
@testable import OutpostConfig

/// An origin in the same process (`Origin`): answers from a script, records what it was sent.
final class FakeOrigin: Origin {
    struct Answer: Sendable {
        var status = 200
        var headers: [(String, String)] = []
        var body: [String] = []
        var interim: [(Int, [(String, String)])] = []
        var error: ProxyError?
        /// A body the test feeds as it likes (``StreamedBody``) instead of `body`.
        var streamed: OriginBody?
    }

    private let script: @Sendable (String, String, HeaderFields) -> Answer
    private let seen = NIOLockedValueBox<[(method: String, path: String, headers: HeaderFields)]>([])

    init(_ script: @escaping @Sendable (_ method: String, _ path: String) -> Answer) {
        self.script = { method, path, _ in script(method, path) }
    }

    /// An origin whose answer depends on the request's header fields too.
    init(answering script: @escaping @Sendable (_ method: String, _ path: String, _ headers: HeaderFields) -> Answer) {
        self.script = script
    }

    var requests: [(method: String, path: String, headers: HeaderFields)] { seen.withLockedValue { $0 } }

    func execute(_ request: UpstreamRequest, logger: Logger) async throws -> UpstreamResponse {
        seen.withLockedValue { $0.append((request.method, request.pathAndQuery, request.headers)) }
        let answer = script(request.method, request.pathAndQuery, request.headers)
        if let error = answer.error { throw error }
        for (status, fields) in answer.interim { request.interim?(status, HeaderFields(fields)) }
        var headers = HeaderFields(answer.headers)
        if !headers.contains("Date") { headers.add("Date", HTTPDate.format(Int64(Date().timeIntervalSince1970))) }
        return UpstreamResponse(
            status: answer.status, headers: headers,
            body: answer.streamed ?? .complete(answer.body.map { ByteBuffer(string: $0) }))
    }
}

/// An origin body the test sends piece by piece, and may break off.
struct StreamedBody: Sendable {
    let body: OriginBody
    private let source: OriginBody.Source

    init() {
        let producer = OriginBody.makeSequence(
            elementType: ByteBuffer.self,
            backPressureStrategy: .init(lowWatermark: 2, highWatermark: 1 << 20), finishOnDeinit: true,
            delegate: OriginBodyDemand(source: nil, loop: nil, exchange: 0))
        body = producer.sequence
        source = producer.source
    }

    func send(_ text: String) { _ = source.yield(ByteBuffer(string: text)) }
    func end() { source.finish() }
    func breakOff() { source.finish(ProxyError.connectionTerminated("origin.test closed the connection")) }
}

/// Collects what the pipeline sends to the client.
final class RecordingSink: ResponseSink {
    struct Sent: Sendable {
        var interim: [Int] = []
        var status: Int?
        var headers = HeaderFields()
        var body = ""
        var ended = false
    }

    private let sent = NIOLockedValueBox(Sent())
    var response: Sent { sent.withLockedValue { $0 } }

    func sendHead(status: Int, headers: HeaderFields) async throws {
        sent.withLockedValue {
            $0.status = status
            $0.headers = headers
        }
    }
    func sendBody(_ buffer: ByteBuffer) async throws { sent.withLockedValue { $0.body += String(buffer: buffer) } }
    func sendEnd() async throws { sent.withLockedValue { $0.ended = true } }
    func sendInterim(status: Int, headers: HeaderFields) { sent.withLockedValue { $0.interim.append(status) } }
}

/// The cache pipeline driven request by request against `FakeOrigin`: no sockets (issue 12,
/// the `Origin` protocol). The store is real, on disk.
@Suite("EdgeProxy: the pipeline against an in-process origin")
struct PipelineFakeOriginTests {
    static func withPipeline(
        _ origin: FakeOrigin, configure: (inout OutpostConfiguration) -> Void = { _ in },
        _ body: (CachePipeline, TestClock) async throws -> Void
    ) async throws {
        var configuration = OutpostConfiguration()
        configure(&configuration)
        configuration.upstream.defaultOrigin = OriginURL(parsing: "http://origin.test")
        configuration.store.path = NSTemporaryDirectory() + "outpost-pipeline-test-" + UUID().uuidString
        configuration.store.syncCommits = false
        configuration.store.maxStoreSize = 64 << 20
        defer { try? FileManager.default.removeItem(atPath: configuration.store.path) }
        let store = try CacheStore(configuration: configuration.store)
        let clock = TestClock()
        var logger = Logger(label: "outpost-test")
        logger.logLevel = .critical
        let pipeline = CachePipeline(
            configuration: configuration, store: store, upstream: origin, clock: clock, logger: logger)
        do {
            try await body(pipeline, clock)
        } catch {
            await pipeline.drainBackground()
            store.close()
            throw error
        }
        await pipeline.drainBackground()
        store.close()
    }

    static func request(_ path: String, method: String = "GET", headers: [(String, String)] = []) -> ClientRequest {
        ClientRequest(
            method: RequestMethod(token: method), target: path, pathAndQuery: path, headers: HeaderFields(headers),
            key: CacheKey(scheme: "http", authority: "site.test", pathAndQuery: path),
            origin: OriginURL(parsing: "http://origin.test")!, clientAddress: "192.0.2.1", body: nil)
    }

    /// Sends a request through the pipeline and returns what the client got.
    static func send(_ pipeline: CachePipeline, _ request: ClientRequest) async throws -> RecordingSink.Sent {
        let sink = RecordingSink()
        _ = try await pipeline.handle(request, sink: sink)
        return sink.response
    }

    /// Waits until the store holds `path` (commits finish behind the client).
    static func stored(_ pipeline: CachePipeline, _ path: String) async throws -> Bool {
        try await eventually {
            if case .found = try pipeline.store.lookup("http://site.test" + path, requestHeaders: HeaderFields()) {
                return true
            }
            return false
        }
    }

    @Test("a miss goes to the origin once and is stored; the next request is a hit")
    func missThenHit() async throws {
        let origin = FakeOrigin { _, path in
            .init(headers: [("Cache-Control", "max-age=60"), ("Content-Type", "text/plain")], body: ["hello ", path])
        }
        try await Self.withPipeline(origin) { pipeline, _ in
            let miss = try await Self.send(pipeline, Self.request("/a"))
            #expect(miss.status == 200 && miss.body == "hello /a" && miss.ended)
            #expect(miss.headers["Cache-Status"]?.contains("fwd=uri-miss") == true)
            #expect(try await Self.stored(pipeline, "/a"))
            let hit = try await Self.send(pipeline, Self.request("/a"))
            #expect(hit.status == 200 && hit.body == "hello /a")
            #expect(hit.headers["Cache-Status"]?.contains("; hit") == true, "\(hit.headers)")
            #expect(origin.requests.map(\.path) == ["/a"])
            // What went upstream: Via added, the client's address forwarded.
            #expect(origin.requests.first?.headers["Via"]?.hasPrefix("1.1 ") == true)
            #expect(origin.requests.first?.headers["X-Forwarded-For"] == "192.0.2.1")
        }
    }

    @Test("the origin failing: 502 with Proxy-Status when nothing is stored; the stale copy when one is")
    func originFails() async throws {
        let down = NIOLockedValueBox(false)
        let origin = FakeOrigin { _, _ in
            down.withLockedValue { $0 }
                ? .init(error: .connectionRefused("origin.test refused the connection"))
                : .init(headers: [("Cache-Control", "max-age=10")], body: ["fresh"])
        }
        try await Self.withPipeline(origin) { pipeline, clock in
            down.withLockedValue { $0 = true }
            let failed = try await Self.send(pipeline, Self.request("/s"))
            #expect(failed.status == 502)
            #expect(failed.headers["Proxy-Status"]?.contains("error=connection_refused") == true)
            down.withLockedValue { $0 = false }
            _ = try await Self.send(pipeline, Self.request("/s"))
            #expect(try await Self.stored(pipeline, "/s"))
            down.withLockedValue { $0 = true }
            clock.advance(by: 30)
            // RFC 9111 §4.2.4 within cache.stale_if_error: the stale copy instead of the error.
            let stale = try await Self.send(pipeline, Self.request("/s"))
            #expect(stale.status == 200 && stale.body == "fresh", "\(stale.headers)")
            #expect(stale.headers["Cache-Status"]?.contains("fwd=stale") == true, "\(stale.headers)")
        }
    }

    @Test("interim responses reach the sink before the final response; a pass invalidates on success")
    func interimAndInvalidation() async throws {
        let origin = FakeOrigin { method, _ in
            method == "GET"
                ? .init(headers: [("Cache-Control", "max-age=60")], body: ["v1"])
                : .init(status: 204, interim: [(103, [("Link", "</a.css>; rel=preload")])])
        }
        try await Self.withPipeline(origin) { pipeline, _ in
            _ = try await Self.send(pipeline, Self.request("/r"))
            #expect(try await Self.stored(pipeline, "/r"))
            let deleted = try await Self.send(pipeline, Self.request("/r", method: "DELETE"))
            #expect(deleted.interim == [103] && deleted.status == 204)
            #expect(deleted.headers["Cache-Status"]?.contains("fwd=method") == true)
            // RFC 9111 §4.4: the stored GET is gone; the next GET goes to the origin.
            let again = try await Self.send(pipeline, Self.request("/r"))
            #expect(again.headers["Cache-Status"]?.contains("; hit") != true)
            #expect(origin.requests.map(\.method) == ["GET", "DELETE", "GET"])
        }
    }

    @Test("a miss answers the client's conditions before its Range, as a hit does (RFC 9110 §13.2.2)")
    func missConditionsBeforeRange() async throws {
        let origin = FakeOrigin { _, _ in
            .init(
                headers: [("Cache-Control", "max-age=60"), ("ETag", "\"v1\""), ("Content-Length", "10")],
                body: ["0123456789"])
        }
        try await Self.withPipeline(origin) { pipeline, _ in
            let headers = [("Range", "bytes=0-3"), ("If-None-Match", "\"v1\"")]
            let miss = try await Self.send(pipeline, Self.request("/c", headers: headers))
            #expect(miss.status == 304 && miss.body.isEmpty, "\(miss.headers)")
            // The cache asked for the whole response, without the client's Range or condition.
            #expect(origin.requests.first?.headers["Range"] == nil)
            #expect(origin.requests.first?.headers["If-None-Match"] == nil)
            #expect(try await Self.stored(pipeline, "/c"))
            let hit = try await Self.send(pipeline, Self.request("/c", headers: headers))
            #expect(hit.status == 304 && hit.headers["Cache-Status"]?.contains("; hit") == true)
            let range = try await Self.send(pipeline, Self.request("/c", headers: [("Range", "bytes=0-3")]))
            #expect(range.status == 206 && range.body == "0123")
        }
    }

    @Test("a Range of an object over range_fetch_max_size: fetched again as the range alone, once")
    func rangeOfLargeObject() async throws {
        let body = String(repeating: "x", count: 2000)
        let origin = FakeOrigin(answering: { _, _, headers in
            if headers["Range"] == "bytes=100-199" {
                return .init(
                    status: 206,
                    headers: [
                        ("Cache-Control", "max-age=60"), ("ETag", "\"big\""), ("Content-Range", "bytes 100-199/2000"),
                        ("Content-Length", "100"),
                    ], body: [String(repeating: "y", count: 100)])
            }
            return .init(
                headers: [("Cache-Control", "max-age=60"), ("ETag", "\"big\""), ("Content-Length", "2000")],
                body: [body])
        })
        try await Self.withPipeline(origin, configure: { $0.cache.rangeFetchMaxSize = 1000 }) { pipeline, _ in
            let ranged = try await Self.send(pipeline, Self.request("/big", headers: [("Range", "bytes=100-199")]))
            #expect(ranged.status == 206 && ranged.body == String(repeating: "y", count: 100))
            #expect(ranged.headers["Cache-Status"]?.contains("detail=\"range of a large object\"") == true)
            #expect(origin.requests.map { $0.headers["Range"] } == [nil, "bytes=100-199"])
        }
    }
}
