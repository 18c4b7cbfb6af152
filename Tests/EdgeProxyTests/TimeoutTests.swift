import EdgeProxy
import Foundation
import Testing

/// The connection timers on the real clock, with short values.
@Suite("EdgeProxy: connection timeouts on the real clock")
struct TimeoutTests {
    @Test(
        "a header section not complete within request_header_timeout gets 408 and a close, though a longer idle timer was armed first"
    )
    func headerTimeout() async throws {
        try await withOutpost(
            origin: staticOrigin([("Cache-Control", "max-age=60")]),
            configure: {
                $0.server.idleTimeout = 30
                $0.server.requestHeaderTimeout = 0.5
            }
        ) { _, outpost, _ in
            let started = ContinuousClock.now
            let answer = try await rawExchange(
                port: outpost.port, "GET /x HTTP/1.1\r\nHost: h\r\nX-Slow: ", deadline: .seconds(20))
            let elapsed = ContinuousClock.now - started
            #expect(answer.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "\(answer)")
            #expect(answer.contains("Connection: close\r\n"))
            #expect(elapsed >= .milliseconds(400))
            #expect(elapsed < .seconds(10), "the header timeout must not wait for the idle timeout")
        }
    }

    @Test("a request body that stalls gets 408 and a close after request_body_timeout; nothing is stored")
    func bodyTimeout() async throws {
        try await withOutpost(
            origin: staticOrigin([("Cache-Control", "max-age=60")]),
            configure: {
                $0.server.idleTimeout = 30
                $0.server.requestHeaderTimeout = 30
                $0.server.requestBodyTimeout = 0.5
            }
        ) { _, outpost, _ in
            let started = ContinuousClock.now
            let answer = try await rawExchange(
                port: outpost.port,
                "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly ten b", deadline: .seconds(20))
            let elapsed = ContinuousClock.now - started
            #expect(answer.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "\(answer)")
            #expect(elapsed >= .milliseconds(400))
            #expect(elapsed < .seconds(10))
        }
    }

    @Test("a request whose body arrives is answered as usual; an idle connection closes quietly, without a 408")
    func steadyBody() async throws {
        try await withOutpost(
            origin: { request in OriginResponse(headers: [("Cache-Control", "no-store")], body: "got it") },
            configure: {
                $0.server.idleTimeout = 1
                $0.server.requestBodyTimeout = 5
            }
        ) { origin, outpost, _ in
            let started = ContinuousClock.now
            let answer = try await rawExchange(
                port: outpost.port,
                "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
                deadline: .seconds(20))
            #expect(
                answer.hasPrefix("HTTP/1.1 200"),
                "after \(ContinuousClock.now - started), origin asked \(origin.count("/upload")) times: \(answer)")
            let idle = try await rawExchange(port: outpost.port, "", deadline: .seconds(20))
            #expect(idle.isEmpty)
        }
    }
}
