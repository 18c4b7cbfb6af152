import EdgeProxy
import Foundation
import Testing

@testable import OutpostConfig

@Suite("EdgeProxy: routing and lifecycle")
struct LifecycleTests {
    @Test("requests go to the origin configured for their Host, others to the default origin")
    func perHostOrigins() async throws {
        let main = try await TestOrigin.start { _ in
            OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "main")
        }
        let assets = try await TestOrigin.start { _ in
            OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "assets")
        }
        let outpost = try await TestOutpost.start(origin: main.url) {
            $0.upstream.hosts["assets.example.test"] = OriginURL(parsing: assets.url)
        }
        let client = TestClient()
        let fromAssets = try await client.get(outpost.base + "/x", [("Host", "assets.example.test")])
        let fromMain = try await client.get(outpost.base + "/x", [("Host", "www.example.test")])
        #expect(fromAssets.text == "assets")
        #expect(fromMain.text == "main")
        // Same path, different sites: two objects, never mixed up.
        #expect(try await client.get(outpost.base + "/x", [("Host", "assets.example.test")]).text == "assets")
        #expect(assets.requests.first?.headers["Host"] == "assets.example.test")
        await client.shutdown()
        await outpost.stop()
        outpost.removeStore()
        await main.stop()
        await assets.stop()
    }

    @Test("graceful shutdown: no new connections, the in-flight request completes, the store closes")
    func gracefulShutdown() async throws {
        let gate = Gate()
        let origin = try await TestOrigin.start { _ in
            await gate.wait()
            return OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "finished")
        }
        let outpost = try await TestOutpost.start(origin: origin.url)
        let client = TestClient()
        let inFlight = Task { try await client.get(outpost.base + "/slow") }
        #expect(try await eventually { origin.count("/slow") == 1 })
        outpost.server.shutdown()
        // The listener is closed: a new connection is refused.
        #expect(
            try await eventually {
                (try? await rawExchange(port: outpost.port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", deadline: .seconds(2)))
                    == nil
            })
        gate.open()
        let response = try await inFlight.value
        #expect(response.status == 200)
        #expect(response.text == "finished")
        await outpost.task.value
        // The store was closed cleanly and holds the object.
        let reopened = try await TestOutpost.start(origin: origin.url, storePath: outpost.storePath)
        #expect(try await client.get(reopened.base + "/slow", [("Host", "127.0.0.1:\(outpost.port)")]).isHit)
        await client.shutdown()
        await reopened.stop()
        reopened.removeStore()
        await origin.stop()
    }
}

@Suite("EdgeProxy: configuration reload")
struct ReloadTests {
    @Test("a reload switches origins and limits for the next request, on a connection opened before it")
    func reloadKeepsConnections() async throws {
        let second = try await TestOrigin.start { request in
            OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "second \(request.path)")
        }
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60")])) { _, outpost, _ in
            let connection = try await KeepAliveConnection(port: outpost.port)
            let host = "127.0.0.1:\(outpost.port)"
            #expect(try await connection.get("/a", host: host).body == "body of /a")
            var next = outpost.server.configuration
            next.upstream.defaultOrigin = OriginURL(parsing: second.url)
            next.server.maxURILength = 64
            next.store.maxStoreSize = 1 << 20
            let notes = try outpost.server.reload(next)
            #expect(notes.contains("upstream reloaded"))
            #expect(notes.contains { $0.hasPrefix("store.*") })
            #expect(outpost.server.configuration.store.maxStoreSize == 256 << 20)
            #expect(try await connection.get("/b", host: host).body == "second /b")
            // Stored before the reload: still a hit.
            #expect(try await connection.get("/a", host: host).body == "body of /a")
            let long = try await connection.get("/" + String(repeating: "x", count: 100), host: host)
            #expect(long.head.hasPrefix("HTTP/1.1 414"))
            // A configuration without an origin is refused and changes nothing.
            var broken = next
            broken.upstream.defaultOrigin = nil
            #expect(throws: ConfigurationError.self) { try outpost.server.reload(broken) }
            #expect(outpost.server.configuration.upstream.defaultOrigin == OriginURL(parsing: second.url))
            await connection.close()
        }
        await second.stop()
    }
}
