import HTTPCaching
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import CacheTransaction
@testable import EdgeProxy
@testable import OutpostConfig

/// The origin client of requests without a body (misses, validations, HEAD): kept-alive
/// connections per event loop, a stale one replaced, the per-origin limit queued.
@Suite("EdgeProxy: origin connections")
struct OriginClientTests {
    static var loops: Int { Array(MultiThreadedEventLoopGroup.singleton.makeIterator()).count }

    static let origin: TestOrigin.Handler = { request in
        OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "body of \(request.path)")
    }

    @Test("misses one after another reuse kept-alive connections")
    func keepAlive() async throws {
        try await withOutpost(origin: Self.origin) { origin, outpost, client in
            for index in 0..<12 {
                let response = try await client.get(outpost.base + "/k/\(index)")
                #expect(response.status == 200)
                #expect(response.text == "body of /k/\(index)")
            }
            #expect(origin.count("/k/0") == 1)
            // At most one connection per event loop for requests that never overlap.
            #expect(origin.connectionCount <= Self.loops)
        }
    }

    @Test("a kept-alive connection the origin closed is replaced, and the request sent again")
    func staleConnection() async throws {
        // The first time /s/b arrives, the origin closes the connection without answering, as
        // an origin does when its keep-alive timeout races a new request. It arrives on a
        // kept-alive connection (every event loop has one after the warm-up), so the request
        // had no effect and is sent again on a new connection.
        let attempts = NIOLockedValueBox(0)
        let racing: TestOrigin.Handler = { request in
            if request.path == "/s/b",
                attempts.withLockedValue({
                    $0 += 1; return $0
                }) == 1
            {
                var response = OriginResponse(body: "")
                response.action = .hangUp
                return response
            }
            return OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "body of \(request.path)")
        }
        // One connection per event loop: warm up until every loop has opened its own (requests
        // spread over the loops), so that /s/b finds a kept-alive one wherever it goes.
        try await withOutpost(origin: racing, configure: { $0.upstream.maxConnectionsPerOrigin = Self.loops }) {
            origin, outpost, client in
            var warm = 0
            while origin.connectionCount < Self.loops && warm < 200 {
                #expect(try await client.get(outpost.base + "/s/a\(warm)").status == 200)
                warm += 1
            }
            #expect(origin.connectionCount == Self.loops)
            let before = origin.connectionCount
            let response = try await client.get(outpost.base + "/s/b")
            #expect(response.status == 200, "\(response.cacheStatus)")
            #expect(response.text == "body of /s/b")
            #expect(origin.count("/s/b") == 2)
            #expect(origin.connectionCount == before + 1)
        }
    }

    @Test("a new connection the origin closes without answering is an error, not a retry")
    func closedNewConnection() async throws {
        let hangUp: TestOrigin.Handler = { _ in
            var response = OriginResponse(body: "")
            response.action = .hangUp
            return response
        }
        try await withOutpost(origin: hangUp) { origin, outpost, client in
            let response = try await client.get(outpost.base + "/h")
            #expect(response.status == 502)
            #expect(response.headers["Proxy-Status"]?.contains("connection_terminated") == true)
            #expect(origin.count("/h") == 1)
        }
    }

    @Test("past upstream.max_connections_per_origin requests wait for a connection, then all succeed")
    func connectionLimit() async throws {
        let slow: TestOrigin.Handler = { request in
            var response = OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "slow \(request.path)")
            response.delay = .milliseconds(100)
            return response
        }
        try await withOutpost(
            origin: slow,
            configure: {
                $0.upstream.maxConnectionsPerOrigin = 1
                // The subject is the waiting, not the deadline: room for a loaded machine.
                $0.upstream.responseTimeout = 30
            }
        ) {
            origin, outpost, client in
            let texts = try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<8 {
                    group.addTask { try await client.get(outpost.base + "/l/\(index)").text }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(Set(texts) == Set((0..<8).map { "slow /l/\($0)" }))
            // The limit is shared out among the event loops: one connection each.
            #expect(origin.connectionCount <= Self.loops)
        }
    }
}

/// The client itself, on a group of one event loop, so that which loop a request takes is
/// not left to chance.
@Suite("EdgeProxy: origin client on one event loop")
struct OriginClientLoopTests {
    static func request(_ origin: TestOrigin, _ path: String) -> UpstreamRequest {
        UpstreamRequest(
            origin: OriginURL(parsing: origin.url)!, method: "GET", pathAndQuery: path,
            headers: HeaderFields([("Host", "h")]), body: nil)
    }

    static func collect(_ response: UpstreamResponse) async throws -> String {
        var text = ""
        for try await buffer in response.body { text += String(buffer: buffer) }
        return text
    }

    @Test("at the connection limit a request waits for a free connection, within its response deadline")
    func waitsWithinDeadline() async throws {
        let gate = Gate()
        let origin = try await TestOrigin.start { request in
            var response = OriginResponse(body: "answer to \(request.path)")
            if request.path == "/held" {
                response = OriginResponse(bytes: Array(repeating: UInt8(ascii: "x"), count: 20_000), pieces: 2)
                response.gate = gate
            }
            return response
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = OriginClient(
            group: group,
            settings: .init(
                // Long enough that a loaded machine does not time out the held request itself.
                connectTimeout: .seconds(5), readTimeout: .seconds(30), responseTimeout: .seconds(8),
                connectionsPerLoop: 1))
        // The one connection is held: its body stops after the first piece until the gate opens.
        let held = try await client.execute(Self.request(origin, "/held"))
        #expect(held.status == 200)
        // A second request waits for the connection, and its deadline ends the wait.
        await #expect(throws: ProxyError.self) { _ = try await client.execute(Self.request(origin, "/waits")) }
        #expect(origin.count("/waits") == 0)
        // Once the held body ends, the connection is free and kept alive for the next request.
        gate.open()
        #expect(try await Self.collect(held).utf8.count == 20_000)
        let next = try await client.execute(Self.request(origin, "/next"))
        #expect(try await Self.collect(next) == "answer to /next")
        #expect(origin.connectionCount == 1)
        await client.shutdown()
        await origin.stop()
        try await group.shutdownGracefully()
    }
}
