import Foundation
import HTTPCaching
import Testing

@testable import CacheTransaction
@testable import EdgeProxy
@testable import OutpostConfig

/// A parent (shield) tier and request loops (docs/fleet.md): real Outposts on loopback ports,
/// one real origin.
@Suite("EdgeProxy: a parent tier, and loops refused")
struct FleetTests {
    /// Starts a parent Outpost and `edges` edges whose parent it is, all before `origin`.
    static func withShield(
        edges count: Int = 1, origin handler: @escaping TestOrigin.Handler,
        configureEdge: @escaping (inout OutpostConfiguration) -> Void = { _ in },
        _ body: (TestOrigin, TestOutpost, [TestOutpost], TestClient) async throws -> Void
    ) async throws {
        let origin = try await TestOrigin.start(handler)
        let parent = try await TestOutpost.start(origin: origin.url)
        var edges: [TestOutpost] = []
        for _ in 0..<count {
            edges.append(
                try await TestOutpost.start(origin: origin.url) {
                    $0.upstream.parent = OriginURL(parsing: parent.base)
                    // The origin's authority as Host: a parent still gets the client's.
                    $0.server.preserveHost = false
                    configureEdge(&$0)
                })
        }
        let client = TestClient()
        defer { for outpost in edges + [parent] { outpost.removeStore() } }
        do {
            try await body(origin, parent, edges, client)
        } catch {
            await client.shutdown()
            for outpost in edges + [parent] { await outpost.stop() }
            await origin.stop()
            throw error
        }
        await client.shutdown()
        for outpost in edges + [parent] { await outpost.stop() }
        await origin.stop()
    }

    /// The address of an Outpost that has stopped: connecting to it is refused.
    /// A parent that refuses connections (a port bound but not listening, held until the
    /// returned object goes).
    static func unreachableParent() throws -> ClosedPort { try ClosedPort() }

    @Test(
        "misses go to the parent with the client's Host: the origin is asked once for two edges; both caches' Cache-Status entries appear, the parent's first"
    )
    func shield() async throws {
        try await Self.withShield(
            edges: 2, origin: { _ in OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "shielded") }
        ) { origin, parent, edges, client in
            let first = try await client.get(edges[0].base + "/a")
            #expect(first.status == 200 && first.text == "shielded")
            let entries = first.headers.listMembers("Cache-Status")
            #expect(entries.count == 2, "\(entries)")
            #expect(entries.allSatisfy { $0.hasPrefix("outpost; fwd=uri-miss") }, "\(entries)")
            // The parent keyed it under the Host the client sent to the edge.
            #expect(try await parent.storedUnder(edges[0].base + "/a"))
            // What reached the origin: the edge's member of CDN-Loop, then the parent's.
            let loop = origin.requests(to: "/a").first?.headers.listMembers("CDN-Loop") ?? []
            #expect(
                loop.count == 2 && loop.allSatisfy { $0.hasPrefix("outpost; node=") } && loop[0] != loop[1], "\(loop)")

            // A second edge asks the parent too (for the same Host), which has it.
            let second = try await client.get(
                edges[1].base + "/a", [("Host", "127.0.0.1:\(edges[0].port)")])
            #expect(second.text == "shielded")
            // The parent's entry (a hit there) first, then this edge's (a miss here).
            let chain = second.headers.listMembers("Cache-Status")
            #expect(
                chain.count == 2 && chain[0].hasPrefix("outpost; hit") && chain[1].contains("fwd=uri-miss"), "\(chain)")
            #expect(origin.count("/a") == 1)
        }
    }

    @Test("a revalidation goes through the parent, which revalidates with the origin")
    func revalidation() async throws {
        try await Self.withShield(origin: { request in
            if request.headers["If-None-Match"] == "\"v1\"" {
                return OriginResponse(status: 304, headers: [("ETag", "\"v1\"")])
            }
            return OriginResponse(headers: [("Cache-Control", "no-cache"), ("ETag", "\"v1\"")], body: "v1")
        }) { origin, parent, edges, client in
            _ = try await client.get(edges[0].base + "/v")
            #expect(try await edges[0].stored("/v"))
            #expect(try await parent.storedUnder(edges[0].base + "/v"))
            let again = try await client.get(edges[0].base + "/v")
            #expect(again.status == 200 && again.text == "v1")
            #expect(again.headers.listMembers("Cache-Status").last?.contains("fwd-status=304") == true)
            #expect(origin.requests(to: "/v").map { $0.headers["If-None-Match"] } == [nil, "\"v1\""])
            // Both came through the parent: two nodes' members each time.
            #expect(origin.requests(to: "/v").allSatisfy { $0.headers.listMembers("CDN-Loop").count == 2 })
        }
    }

    @Test("a parent that cannot be reached: the origin answers and Proxy-Status says why; without fallback, 502")
    func parentDown() async throws {
        let origin = try await TestOrigin.start { _ in
            OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "direct")
        }
        let gone = try Self.unreachableParent()
        let goneBase = gone.base
        for fallback in [true, false] {
            let edge = try await TestOutpost.start(origin: origin.url) {
                $0.upstream.parent = OriginURL(parsing: goneBase)
                $0.upstream.parentFallback = fallback
                $0.server.preserveHost = false
            }
            let client = TestClient()
            let response = try await client.get(edge.base + "/d\(fallback)")
            if fallback {
                #expect(response.status == 200 && response.text == "direct")
                let proxyStatus = response.headers["Proxy-Status"] ?? ""
                #expect(
                    proxyStatus.contains("error=connection_refused") && proxyStatus.contains(goneBase), "\(proxyStatus)"
                )
                #expect(response.cacheStatus.contains("detail=\"parent unreachable\""), "\(response.cacheStatus)")
                // To the origin as any origin request: its own Host, this node's member alone.
                let sent = origin.requests(to: "/dtrue").first?.headers
                #expect(sent?["Host"] == "127.0.0.1:\(origin.port)")
                #expect(sent?.listMembers("CDN-Loop").count == 1)
            } else {
                #expect(response.status == 502)
                #expect(origin.count("/dfalse") == 0)
            }
            await client.shutdown()
            await edge.stop()
            edge.removeStore()
        }
        await origin.stop()
        withExtendedLifetime(gone) {}
    }

    @Test("with the parent unreachable, a revalidation the origin answers 304 says so too; an https parent loads TLS")
    func fallbackRevalidation() async throws {
        let origin = try await TestOrigin.start { request in
            if request.headers["If-None-Match"] == "\"v1\"" {
                return OriginResponse(status: 304, headers: [("ETag", "\"v1\"")])
            }
            return OriginResponse(headers: [("Cache-Control", "no-cache"), ("ETag", "\"v1\"")], body: "v1")
        }
        let gone = try Self.unreachableParent()
        let edge = try await TestOutpost.start(origin: origin.url) {
            $0.upstream.parent = OriginURL(parsing: gone.base)
        }
        let client = TestClient()
        _ = try await client.get(edge.base + "/r")
        #expect(try await edge.stored("/r"))
        let validated = try await client.get(edge.base + "/r")
        #expect(validated.status == 200 && validated.text == "v1")
        #expect(validated.cacheStatus.contains("fwd-status=304"), "\(validated.cacheStatus)")
        #expect(validated.headers["Proxy-Status"]?.contains("error=connection_refused") == true, "\(validated.headers)")
        await client.shutdown()
        await edge.stop()
        edge.removeStore()
        await origin.stop()
        withExtendedLifetime(gone) {}

        var upstream = OutpostConfiguration().upstream
        upstream.defaultOrigin = OriginURL(parsing: "http://origin.test")
        #expect(!UpstreamPool.needsTLS(upstream))
        upstream.parent = OriginURL(parsing: "https://shield.test")
        #expect(UpstreamPool.needsTLS(upstream))
    }

    @Test(
        "an edge configured as its own parent answers 508 instead of looping; so does a request it forwarded before"
    )
    func loops() async throws {
        try await withOutpost(origin: { _ in OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "x") }) {
            origin, outpost, client in
            // Another CDN's member, and this fleet's name alone (an Outpost in front), pass.
            #expect(try await client.get(outpost.base + "/o", [("CDN-Loop", "other-cdn, outpost")]).status == 200)
            // What this node sent the origin, sent back to it (an origin pointing at the CDN).
            let member = try #require(origin.requests(to: "/o").first?.headers.listMembers("CDN-Loop").last)
            #expect(member.hasPrefix("outpost; node="))
            #expect(try await client.get(outpost.base + "/b", [("CDN-Loop", member)]).status == 508)
            #expect(origin.count("/b") == 0)

            var looped = outpost.server.configuration
            looped.upstream.parent = OriginURL(parsing: outpost.base)
            _ = try outpost.server.reload(looped)
            let refused = try await client.get(outpost.base + "/self")
            #expect(refused.status == 508, "\(refused.headers)")
            #expect(origin.count("/self") == 0)
        }
    }
}

extension TestOutpost {
    /// Waits until the store holds a response for this exact primary key.
    func storedUnder(_ key: String) async throws -> Bool {
        try await eventually {
            if case .found = try server.store.lookup(key, requestHeaders: HeaderFields()) { return true }
            return false
        }
    }
}
