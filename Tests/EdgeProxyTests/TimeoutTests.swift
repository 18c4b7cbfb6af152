import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import EdgeProxy

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

    @Test("a request whose body arrives in time is answered as usual, not cut by request_body_timeout")
    func steadyBody() async throws {
        try await withOutpost(
            origin: { request in OriginResponse(headers: [("Cache-Control", "no-store")], body: "got it") },
            configure: { $0.server.requestBodyTimeout = 5 }
        ) { origin, outpost, _ in
            let answer = try await rawExchange(
                port: outpost.port,
                "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
                deadline: .seconds(20))
            #expect(answer.hasPrefix("HTTP/1.1 200"), "origin asked \(origin.count("/upload")) times: \(answer)")
        }
    }
}

@Suite("EdgeProxy: connection limits")
struct ConnectionLimitTests {
    @Test("past server.max_connections a new connection gets 503 with Retry-After and a close; a freed place is reused")
    func maxConnections() async throws {
        try await withOutpost(
            origin: staticOrigin([("Cache-Control", "max-age=60")]),
            configure: { $0.server.maxConnections = 2 }
        ) { _, outpost, _ in
            let first = try await KeepAliveConnection(port: outpost.port)
            let second = try await KeepAliveConnection(port: outpost.port)
            let host = "127.0.0.1:\(outpost.port)"
            #expect(try await first.get("/a", host: host).head.hasPrefix("HTTP/1.1 200"))
            #expect(try await second.get("/b", host: host).head.hasPrefix("HTTP/1.1 200"))
            #expect(outpost.server.openConnections == 2)
            let refused = try await rawExchange(
                port: outpost.port, "GET /c HTTP/1.1\r\nHost: \(host)\r\n\r\n", deadline: .seconds(10))
            #expect(refused.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "\(refused)")
            #expect(refused.contains("Retry-After: 1\r\n"))
            await first.close()
            #expect(try await eventually { outpost.server.openConnections == 1 })
            let admitted = try await rawExchange(
                port: outpost.port, "GET /c HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n",
                deadline: .seconds(10))
            #expect(admitted.hasPrefix("HTTP/1.1 200"), "\(admitted)")
            await second.close()
        }
    }

    @Test("the soft open-file limit is raised to the hard one; the default connection limit is half of it")
    func openFiles() {
        let change = OpenFileLimit.raise()
        #expect(change.now == change.hard || change.hard == Int.max)
        #expect(OpenFileLimit.current == change.now)
        #expect(OpenFileLimit.defaultMaxConnections(openFiles: 1024) == 512)
        #expect(OpenFileLimit.defaultMaxConnections(openFiles: 20_000) == 10_000)
        #expect(OpenFileLimit.defaultMaxConnections(openFiles: 50) == 64)
    }
}

@Suite("EdgeProxy: out of file descriptors")
struct DescriptorExhaustionTests {
    @Test(
        "at the open-file limit new connections get 503 at once (no spinning listener), and are served once descriptors free up"
    )
    func outOfDescriptors() async throws {
        let origin = try await TestOrigin.start(staticOrigin([("Cache-Control", "max-age=60")]))
        let directory = NSTemporaryDirectory() + "outpost-fd-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = directory + "/outpost.toml"
        // max_connections above what 128 descriptors allow: accepting itself runs out.
        try writeNodeConfig(
            config, origin: origin.url, store: directory + "/store", server: ["max_connections = 10000"])
        let server = try await OutpostProcess.start(arguments: ["serve", "--config", config], openFiles: 128)
        var held: [Channel] = []
        for _ in 0..<160 {
            guard
                let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connect(host: "127.0.0.1", port: server.port).get()
            else { break }
            held.append(channel)
        }
        let host = "127.0.0.1:\(server.port)"
        let refused = try await rawExchange(
            port: server.port, "GET /a HTTP/1.1\r\nHost: \(host)\r\n\r\n", deadline: .seconds(15))
        #expect(refused.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "\(refused)")
        for channel in held.prefix(60) { try? await channel.close() }
        #expect(
            try await eventually {
                let answer = try await rawExchange(
                    port: server.port, "GET /a HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n",
                    deadline: .seconds(5))
                return answer.hasPrefix("HTTP/1.1 200")
            })
        #expect(server.process.isRunning)
        for channel in held.dropFirst(60) { try? await channel.close() }
        await server.stop()
        await origin.stop()
    }
}
