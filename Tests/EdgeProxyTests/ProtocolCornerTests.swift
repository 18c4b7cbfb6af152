import Foundation
import NIOCore
import Testing

@testable import EdgeProxy

@Suite("EdgeProxy: protocol corners (Upgrade, HTTP/0.9, other versions)")
struct ProtocolCornerTests {
    @Test(
        "an Upgrade request is answered and its connection closed at once, hit or miss; a request pipelined after it is not left waiting",
        arguments: [false, true])
    func upgrade(storedFirst: Bool) async throws {
        try await withOutpost(
            origin: staticOrigin([("Cache-Control", "max-age=60")]),
            configure: { $0.server.idleTimeout = 30 }
        ) { _, outpost, client in
            if storedFirst {
                _ = try await client.get(outpost.base + "/a")
                #expect(try await outpost.stored("/a"))
            }
            let started = ContinuousClock.now
            let answer = try await rawExchange(
                port: outpost.port,
                "GET /a HTTP/1.1\r\nHost: 127.0.0.1:\(outpost.port)\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                    + "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
                    + "GET /b HTTP/1.1\r\nHost: 127.0.0.1:\(outpost.port)\r\n\r\n",
                deadline: .seconds(20))
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
            #expect(answer.contains("body of /a"))
            #expect(answer.lowercased().contains("connection: close\r\n"))
            #expect(!answer.contains("101"))
            #expect(ContinuousClock.now - started < .seconds(10), "closed at once, not at the idle timeout")
        }
    }

    @Test("an HTTP/0.9 request line gets 505 and a close at once, not after the header timeout")
    func http09() async throws {
        try await withOutpost(
            origin: staticOrigin([("Cache-Control", "max-age=60")]),
            // The header timeout is far beyond the bound, so a stalled test machine (one CI run
            // took 17 s here) cannot be mistaken for a close at the timeout, and the other way.
            configure: { $0.server.requestHeaderTimeout = 300 }
        ) { origin, outpost, _ in
            let started = ContinuousClock.now
            let answer = try await rawExchange(port: outpost.port, "GET /a\r\n", deadline: .seconds(120))
            #expect(answer.hasPrefix("HTTP/1.1 505 HTTP Version Not Supported\r\n"), "\(answer)")
            #expect(ContinuousClock.now - started < .seconds(100))
            #expect(origin.count("/a") == 0)
        }
    }

    @Test(
        "request lines of versions Outpost does not speak get 505 and a close",
        arguments: [
            "GET /a HTTP/2.0\r\nHost: h\r\n\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /a HTTP/3.0\r\nHost: h\r\n\r\n",
        ])
    func otherVersions(request: String) async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60")])) { origin, outpost, _ in
            let answer = try await rawExchange(port: outpost.port, request, deadline: .seconds(20))
            #expect(answer.hasPrefix("HTTP/1.1 505 HTTP Version Not Supported\r\n"), "\(answer)")
            #expect(answer.contains("Connection: close\r\n"))
            #expect(origin.count("/a") == 0)
        }
    }

    struct LineCase: Sendable, CustomStringConvertible {
        var bytes: String
        var isHTTP09: Bool
        var description: String { bytes.debugDescription }
    }

    @Test(
        "what counts as an HTTP/0.9 request line",
        arguments: [
            LineCase(bytes: "GET /\r\n", isHTTP09: true),
            LineCase(bytes: "GET /path?q\n", isHTTP09: true),
            LineCase(bytes: "\r\nGET /\r\n", isHTTP09: true),
            LineCase(bytes: "GET / HTTP/1.1\r\nHost: h\r\n\r\n", isHTTP09: false),
            LineCase(bytes: "GET / HTTP/1.0\n\n", isHTTP09: false),
            LineCase(bytes: "\r\n\r\nGET / HTTP/1.1\r\n", isHTTP09: false),
            LineCase(bytes: "GET / HTTP/1.1", isHTTP09: false),
            LineCase(bytes: "GET /", isHTTP09: false),
            LineCase(bytes: "\r\n", isHTTP09: false),
            // The rest of a pipelined request that a read split is not a request line.
            LineCase(bytes: "P/1.1\r\nHost: h\r\n\r\n", isHTTP09: false),
            LineCase(bytes: "st: h\r\n\r\n", isHTTP09: false),
            LineCase(bytes: "1.1\r\nHost: h\r\n", isHTTP09: false),
            LineCase(bytes: "GET /a b\r\n", isHTTP09: false),
            LineCase(bytes: "GET http://h/a\r\n", isHTTP09: true),
        ])
    func http09Lines(line: LineCase) {
        #expect(FirstByteObserver.isHTTP09(ByteBuffer(string: line.bytes)) == line.isHTTP09)
    }
}
