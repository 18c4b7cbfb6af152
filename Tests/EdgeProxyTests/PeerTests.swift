import Foundation
import HTTPCaching
import Testing

@testable import CacheTransaction
@testable import EdgeProxy
@testable import EdgeTelemetry
@testable import OutpostConfig

/// Consistent-hash peers (docs/fleet.md): real Outposts on loopback ports sharing one copy of
/// each object, in front of a shield Outpost and a real origin.
@Suite("EdgeProxy: consistent-hash peers")
struct PeerTests {
    static let host = "www.example.test"

    /// A shield before `origin`, and `count` edges whose parent it is, made peers of each
    /// other by a reload once their ports are known.
    static func withPeers(
        _ count: Int = 3, origin handler: @escaping TestOrigin.Handler,
        configure: @escaping (inout OutpostConfiguration.Cluster) -> Void = { _ in },
        _ body: (TestOrigin, TestOutpost, [TestOutpost], TestClient) async throws -> Void
    ) async throws {
        let origin = try await TestOrigin.start(handler)
        let shield = try await TestOutpost.start(origin: origin.url)
        var edges: [TestOutpost] = []
        for _ in 0..<count {
            edges.append(
                try await TestOutpost.start(origin: origin.url) { $0.upstream.parent = OriginURL(parsing: shield.base) }
            )
        }
        for edge in edges {
            var configuration = edge.server.configuration
            configuration.cluster.selfURL = OriginURL(parsing: edge.base)
            configuration.cluster.peers = edges.compactMap { OriginURL(parsing: $0.base) }
            // The suite runs in parallel on a small machine: a check may stall for a second
            // without the peer being down (docs/fleet.md explains the setting).
            configuration.cluster.healthTimeout = 5
            configure(&configuration.cluster)
            _ = try edge.server.reload(configuration)
        }
        let client = TestClient()
        defer { for outpost in edges + [shield] { outpost.removeStore() } }
        do {
            try await body(origin, shield, edges, client)
        } catch {
            await client.shutdown()
            for outpost in edges + [shield] { await outpost.stop() }
            await origin.stop()
            throw error
        }
        await client.shutdown()
        for outpost in edges + [shield] { await outpost.stop() }
        await origin.stop()
    }

    /// The index of the edge that owns `path` among `edges` (all live).
    static func owner(of path: String, among edges: [TestOutpost]) -> Int {
        Rendezvous.ranking("http://\(host)\(path)", seeds: edges.map { Rendezvous.seed($0.base) })[0]
    }

    /// Requests this node answered, whatever path answered them.
    static func requests(_ outpost: TestOutpost) -> Int {
        outpost.server.telemetry.statistics(usage: .init(), entries: 0, maxBytes: 0)["requests"] as? Int ?? -1
    }

    static func get(
        _ client: TestClient, _ edge: TestOutpost, _ path: String, _ headers: [(String, String)] = []
    )
        async throws -> TestResponse
    {
        try await client.get(edge.base + path, [("Host", host)] + headers)
    }

    static let cacheable: TestOrigin.Handler = { request in
        OriginResponse(headers: [("Cache-Control", "max-age=600")], body: "body of \(request.path)")
    }

    @Test(
        "each URL asked of all three edges reaches the shield and the origin once; only its owner stores it; stopping an edge moves only its keys"
    )
    func shareOneCopy() async throws {
        try await Self.withPeers(origin: Self.cacheable) { origin, shield, edges, client in
            // Five keys of each edge (the ports, and so the owners, change from run to run).
            let candidates = (0..<300).map { "/asset/\($0)" }
            let paths = (0..<3).flatMap { edge in
                candidates.filter { Self.owner(of: $0, among: edges) == edge }.prefix(5)
            }
            let owners = paths.map { Self.owner(of: $0, among: edges) }
            #expect(Set(owners).count == 3, "every edge owns some of the keys: \(owners)")
            for (path, owner) in zip(paths, owners) {
                for edge in edges {
                    // A fetch's commit may land after its client has the response: the next
                    // request waits for the owner to hold it, or it would fetch again.
                    if edge.port != edges[0].port {
                        #expect(try await edges[owner].storedUnder("http://\(Self.host)\(path)"))
                    }
                    let response = try await Self.get(client, edge, path)
                    #expect(response.status == 200 && response.text == "body of \(path)")
                }
            }
            for (path, owner) in zip(paths, owners) {
                #expect(origin.count(path) == 1, "\(path)")
                #expect(try await edges[owner].storedUnder("http://\(Self.host)\(path)"))
                for (index, edge) in edges.enumerated() where index != owner {
                    guard
                        case .noEntry = try edge.server.store.lookup(
                            "http://\(Self.host)\(path)", requestHeaders: HeaderFields())
                    else {
                        Issue.record(
                            "edge \(index) keeps a copy of \(path), owned by edge \(owner): \(edge.server.telemetry.peers.statistics())"
                        )
                        continue
                    }
                }
            }
            #expect(Self.requests(shield) == paths.count)

            // Through a non-owner: the shield's entry, the owner's, then this edge's.
            let path = paths[0]
            let other = edges.indices.first { $0 != owners[0] }!
            let chain = try await Self.get(client, edges[other], path).headers.listMembers("Cache-Status")
            // The shield's entry (kept with the owner's copy), the owner's hit, this edge's miss.
            #expect(chain.count == 3, "\(chain)")
            #expect(chain.count == 3 && chain[1].hasPrefix("outpost; hit") && chain[2].contains("fwd=uri-miss"))
            #expect(chain.last?.contains("detail=\"a peer owns it\"") == true, "\(chain)")
            let stats = edges[other].server.telemetry.peers.statistics()
            let ownerStats = stats[edges[owners[0]].base] as? [String: Any]
            #expect((ownerStats?["requests"] as? Int ?? 0) >= 1 && ownerStats?["live"] as? Bool == true, "\(stats)")
            #expect((stats[edges[other].base] as? [String: Any])?["self"] as? Bool == true)

            // Edge 2 stops: its keys go to their next owners (the shield is asked once for
            // each); every other key stays where it is (no shield request).
            await edges[2].stop()
            let before = Self.requests(shield)
            for path in paths {
                let seeds = edges.prefix(2).map { Rendezvous.seed($0.base) }
                let next = edges[Rendezvous.ranking("http://\(Self.host)\(path)", seeds: seeds)[0]]
                for edge in edges.prefix(2) {
                    if edge.port != edges[0].port { #expect(try await next.storedUnder("http://\(Self.host)\(path)")) }
                    let response = try await Self.get(client, edge, path)
                    #expect(response.text == "body of \(path)", "\(response.status) \(response.headers)")
                }
            }
            #expect(Self.requests(shield) - before == owners.filter { $0 == 2 }.count)
            #expect(paths.allSatisfy { origin.count($0) == 1 })
            let down = edges[0].server.telemetry.peers.statistics()[edges[2].base] as? [String: Any]
            #expect(
                down?["live"] as? Bool == false && (down?["errors"] as? Int ?? 0) >= 1, "\(String(describing: down))")
        }
    }

    @Test("a request a peer forwarded is answered by the node it reached, never forwarded again")
    func notForwardedTwice() async throws {
        try await Self.withPeers(origin: Self.cacheable) { origin, shield, edges, client in
            let path = (0..<50).map { "/f/\($0)" }.first { Self.owner(of: $0, among: edges) == 2 }!
            let response = try await Self.get(client, edges[0], path, [(PeerSet.header, edges[1].base)])
            #expect(response.status == 200 && origin.count(path) == 1)
            #expect(Self.requests(edges[2]) == 0)
            #expect(try await edges[0].storedUnder("http://\(Self.host)\(path)"))
            // What went upstream does not carry the field.
            #expect(origin.requests(to: path).first?.headers[PeerSet.header] == nil)
            // Anyone but a peer naming itself is an ordinary client: the owner is asked.
            let stranger = (0..<50).map { "/s/\($0)" }.first { Self.owner(of: $0, among: edges) == 2 }!
            _ = try await Self.get(client, edges[0], stranger, [(PeerSet.header, "http://10.9.9.9:80")])
            #expect(Self.requests(edges[2]) == 1)
        }
    }

    @Test("cluster.local_copy_ttl: a non-owner keeps its own copy, fresh for at most that long")
    func localCopy() async throws {
        try await Self.withPeers(origin: Self.cacheable, configure: { $0.localCopyTTL = 30 }) {
            origin, shield, edges, client in
            let path = (0..<50).map { "/l/\($0)" }.first { Self.owner(of: $0, among: edges) == 1 }!
            // The owner's copy is 100 s old (of 600) when edge 0 first asks for it: the local
            // copy is still fresh for 30 s from its arrival, not stale at once.
            #expect(try await Self.get(client, edges[1], path).status == 200)
            #expect(try await edges[1].storedUnder("http://\(Self.host)\(path)"))
            edges[1].clock.advance(by: 100)
            let first = try await Self.get(client, edges[0], path)
            #expect(first.status == 200 && (first.headers["Age"].flatMap { Int($0) } ?? 0) >= 100, "\(first.headers)")
            #expect(try await edges[0].storedUnder("http://\(Self.host)\(path)"))
            let asked = Self.requests(edges[1])
            let again = try await Self.get(client, edges[0], path)
            let entry = again.headers.listMembers("Cache-Status").last ?? ""
            #expect(entry.hasPrefix("outpost; hit"), "\(entry)")
            #expect(Self.requests(edges[1]) == asked)
            let ttl = entry.split(separator: ";").first { $0.contains("ttl=") }.flatMap {
                Int($0.split(separator: "=")[1])
            }
            #expect(ttl != nil && ttl! <= 30, "\(entry)")
            // Past the cap the copy is revalidated with the owner (which still has it fresh).
            edges[0].clock.advance(by: 31)
            let later = try await Self.get(client, edges[0], path)
            #expect(later.status == 200 && Self.requests(edges[1]) == asked + 1, "\(later.cacheStatus)")
            #expect(origin.count(path) == 1)
        }
    }

    @Test("health checks (OPTIONS *) take a stopped peer down without any traffic; /metrics shows each peer")
    func healthChecks() async throws {
        try await Self.withPeers(
            origin: Self.cacheable,
            configure: {
                // Short intervals so that the test is quick; a timeout long enough for a
                // loaded machine (the suite runs in parallel), so only the stopped peer fails.
                $0.healthInterval = 0.1
                $0.healthTimeout = 3
            }
        ) { origin, shield, edges, client in
            let options = try await rawExchange(
                port: edges[0].port, "OPTIONS * HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n")
            #expect(options.hasPrefix("HTTP/1.1 200"), "\(options)")
            #expect(origin.count("*") == 0 && Self.requests(shield) == 0)

            let metrics = try await client.get("http://127.0.0.1:\(edges[0].adminPort)/metrics").text
            for edge in edges {
                #expect(metrics.contains("outpost_peer_up{peer=\"\(edge.base)\"} 1"), "\(metrics)")
            }
            await edges[1].stop()
            let live = { (peer: String) in
                (edges[0].server.telemetry.peers.statistics()[peer] as? [String: Any])?["live"] as? Bool
            }
            #expect(try await eventually { live(edges[1].base) == false })
            #expect(live(edges[2].base) == true)
            let after = try await client.get("http://127.0.0.1:\(edges[0].adminPort)/metrics").text
            #expect(after.contains("outpost_peer_up{peer=\"\(edges[1].base)\"} 0"), "\(after)")
        }
    }
}
