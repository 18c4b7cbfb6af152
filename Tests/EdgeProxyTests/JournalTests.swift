import Foundation
import HTTPCaching
import NIOConcurrencyHelpers
import Testing

@testable import CacheStore
@testable import EdgeProxy
@testable import OutpostConfig

/// The purge journal on a real PostgreSQL (docs/fleet.md): purges posted to one node reach
/// every node, a node that was down replays what it missed before serving what a purge
/// could cover, and PostgreSQL going away loses no journaled purge.
@Suite("EdgeProxy: the purge journal on PostgreSQL", .serialized)
struct JournalTests {
    static let host = "www.example.test"

    /// An origin whose bodies carry a version the test moves on.
    final class VersionedOrigin: Sendable {
        let version = NIOLockedValueBox(1)
        var handler: TestOrigin.Handler {
            { [version] request in
                OriginResponse(
                    headers: [("Cache-Control", "max-age=600"), ("ETag", "\"v\(version.withLockedValue { $0 })\"")],
                    body: "v\(version.withLockedValue { $0 }) of \(request.path)")
            }
        }
    }

    struct Fleet {
        let postgres: TestPostgres
        let origin: TestOrigin
        let versions: VersionedOrigin
        var shield: TestOutpost
        var edges: [TestOutpost]
        let client: TestClient
        let configure: @Sendable (inout OutpostConfiguration) -> Void

        var nodes: [TestOutpost] { edges + [shield] }

        func get(_ edge: TestOutpost, _ path: String) async throws -> TestResponse {
            try await client.get(edge.base + path, [("Host", JournalTests.host)])
        }

        /// POST /purge to `node`'s admin API; the answer's JSON.
        func purge(_ node: TestOutpost, _ body: String) async throws -> [String: Any] {
            let answer = try await client.request(
                "http://127.0.0.1:\(node.adminPort)/purge", method: .POST, body: body)
            #expect(answer.status == 200, "\(answer.text)")
            return try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any] ?? [:]
        }

        func waitUntilLive(_ outposts: [TestOutpost]) async throws {
            for outpost in outposts {
                let live = try await eventually(timeout: .seconds(20)) {
                    outpost.server.journal?.statistics()["state"] as? String == "live"
                }
                #expect(live, "\(outpost.server.journal?.statistics() ?? [:])")
            }
        }

        /// An edge again, on the store it had (a restart).
        func restart(_ edge: TestOutpost) async throws -> TestOutpost {
            try await TestOutpost.start(origin: origin.url, storePath: edge.storePath) {
                $0.upstream.parent = OriginURL(parsing: shield.base)
                configure(&$0)
            }
        }
    }

    static func withFleet(
        edges count: Int = 3, configure: @escaping @Sendable (inout OutpostConfiguration) -> Void = { _ in },
        _ body: (inout Fleet) async throws -> Void
    ) async throws {
        let postgres = try await TestPostgres.start()
        do {
            try await withFleet(on: postgres, edges: count, configure: configure, body)
        } catch {
            await postgres.destroy()
            throw error
        }
        await postgres.destroy()
    }

    private static func withFleet(
        on postgres: TestPostgres, edges count: Int,
        configure: @escaping @Sendable (inout OutpostConfiguration) -> Void,
        _ body: (inout Fleet) async throws -> Void
    ) async throws {
        let versions = VersionedOrigin()
        let origin = try await TestOrigin.start(versions.handler)
        let journal = { @Sendable (configuration: inout OutpostConfiguration) in
            configuration.cluster.purgeJournal = try! JournalLocation(parsing: postgres.url)
            configuration.cluster.journalReconnectMax = 0.5
            configure(&configuration)
        }
        let shield = try await TestOutpost.start(origin: origin.url, configure: journal)
        var edges: [TestOutpost] = []
        for _ in 0..<count {
            edges.append(
                try await TestOutpost.start(origin: origin.url) {
                    $0.upstream.parent = OriginURL(parsing: shield.base)
                    journal(&$0)
                })
        }
        var fleet = Fleet(
            postgres: postgres, origin: origin, versions: versions, shield: shield, edges: edges, client: TestClient(),
            configure: journal)
        do {
            try await fleet.waitUntilLive(fleet.nodes)
            try await body(&fleet)
        } catch {
            await fleet.client.shutdown()
            for outpost in fleet.nodes { await outpost.stop() }
            for outpost in fleet.nodes { outpost.removeStore() }
            await origin.stop()
            throw error
        }
        await fleet.client.shutdown()
        for outpost in fleet.nodes { await outpost.stop() }
        for outpost in fleet.nodes { outpost.removeStore() }
        await origin.stop()
    }

    static func key(_ path: String) -> String { "http://\(host)\(path)" }

    static func holds(_ outpost: TestOutpost, _ path: String) throws -> Bool {
        if case .found = try outpost.server.store.lookup(key(path), requestHeaders: HeaderFields()) { return true }
        return false
    }

    @Test("a purge posted to one edge is journaled and reaches the other edges and the shield, which refetch")
    func reachesEveryNode() async throws {
        try await Self.withFleet { fleet in
            // Each next request waits for the shield's commit (it may land after the answer).
            for edge in fleet.edges {
                #expect(try await fleet.get(edge, "/p").text == "v1 of /p")
                #expect(try await eventually { try Self.holds(fleet.shield, "/p") })
            }
            #expect(fleet.origin.count("/p") == 1)
            fleet.versions.version.withLockedValue { $0 = 2 }

            let answer = try await fleet.purge(fleet.edges[0], #"{"url": "http://www.example.test/p"}"#)
            #expect(answer["journaled"] as? Bool == true && answer["purged"] as? Int == 1, "\(answer)")
            let sequence = try #require(answer["sequence"] as? Int)
            for node in fleet.nodes {
                #expect(try await eventually { try !Self.holds(node, "/p") }, "\(node.base)")
                #expect(try await eventually { try node.server.store.journalApplied() == Int64(sequence) })
            }
            for edge in fleet.edges {
                #expect(try await fleet.get(edge, "/p").text == "v2 of /p")
                #expect(try await eventually { try Self.holds(fleet.shield, "/p") })
            }
            // The shield refetched once for all three edges.
            #expect(fleet.origin.count("/p") == 2)
            // The journal's row, and each node's record of what it applied.
            #expect(
                try await fleet.postgres.sql("SELECT kind, value, soft FROM purges WHERE seq = \(sequence)")
                    == "url|http://www.example.test/p|f")
            let applied = try await fleet.postgres.sql("SELECT count(*) FROM nodes WHERE applied >= \(sequence)")
            #expect(applied == "4")
            // Tags and prefixes travel too.
            _ = try await fleet.get(fleet.edges[1], "/t/a")
            let tagged = try await fleet.purge(
                fleet.edges[2], #"{"prefix": "http://www.example.test/t/", "soft": true}"#)
            #expect(tagged["journaled"] as? Bool == true)
            #expect(
                try await eventually {
                    guard
                        case .found(let record, _) = try fleet.edges[1].server.store.lookup(
                            Self.key("/t/a"), requestHeaders: HeaderFields())
                    else { return false }
                    return record.softPurgedAt != nil
                })
        }
    }

    @Test("an edge stopped before a purge and started after it never serves the purged object")
    func replayAfterRestart() async throws {
        try await Self.withFleet(edges: 2) { fleet in
            #expect(try await fleet.get(fleet.edges[1], "/q").text == "v1 of /q")
            #expect(try await eventually { try Self.holds(fleet.edges[1], "/q") })
            let stopped = fleet.edges[1]
            await stopped.stop()
            fleet.versions.version.withLockedValue { $0 = 2 }
            let answer = try await fleet.purge(fleet.edges[0], #"{"url": "http://www.example.test/q"}"#)
            #expect(answer["journaled"] as? Bool == true)
            let sequence = try #require(answer["sequence"] as? Int)
            // The restarted edge's miss goes to the shield, which must have applied the purge
            // by then (through its own LISTEN, not the edge's replay).
            let shield = fleet.shield
            #expect(try await eventually { try shield.server.store.journalApplied() == Int64(sequence) })

            // Started again on its store: from its first request on, the old copy is not served
            // (hidden until the replay, removed by it).
            fleet.edges[1] = try await fleet.restart(stopped)
            #expect(try await fleet.get(fleet.edges[1], "/q").text == "v2 of /q")
            try await fleet.waitUntilLive([fleet.edges[1]])
            #expect(try fleet.edges[1].server.store.journalApplied() == Int64(sequence))
            #expect(try await fleet.get(fleet.edges[1], "/q").text == "v2 of /q")
        }
    }

    @Test(
        "while PostgreSQL is down a purge is applied locally and says it was not journaled; started again, nothing journaled is lost"
    )
    func postgresRestart() async throws {
        try await Self.withFleet(edges: 2) { fleet in
            for edge in fleet.edges {
                _ = try await fleet.get(edge, "/a")
                _ = try await fleet.get(edge, "/b")
                _ = try await fleet.get(edge, "/c")
            }
            let first = try await fleet.purge(fleet.edges[0], #"{"url": "http://www.example.test/a"}"#)
            #expect(first["journaled"] as? Bool == true)

            try await fleet.postgres.stopServer()
            for node in fleet.nodes {
                #expect(
                    try await eventually {
                        node.server.journal?.statistics()["state"] as? String == "unreachable"
                    })
            }
            let health = try await fleet.client.get("http://127.0.0.1:\(fleet.edges[0].adminPort)/health")
            #expect(
                health.text.contains("degraded") && health.text.contains("purge journal unreachable"), "\(health.text)")
            let local = try await fleet.purge(fleet.edges[0], #"{"url": "http://www.example.test/b"}"#)
            #expect(local["journaled"] as? Bool == false && local["purged"] as? Int == 1, "\(local)")
            #expect((local["journal_error"] as? String)?.contains("unreachable") == true, "\(local)")
            #expect(try !Self.holds(fleet.edges[0], "/b") && Self.holds(fleet.edges[1], "/b"))

            try await fleet.postgres.startServer()
            try await fleet.waitUntilLive(fleet.nodes)
            // The purge journaled before the stop is still there; a new one reaches every node.
            #expect(try await fleet.postgres.sql("SELECT count(*) FROM purges WHERE value LIKE '%/a'") == "1")
            let after = try await fleet.purge(fleet.edges[1], #"{"url": "http://www.example.test/c"}"#)
            #expect(after["journaled"] as? Bool == true)
            #expect((after["sequence"] as? Int ?? 0) > (first["sequence"] as? Int ?? 0))
            for node in fleet.nodes { #expect(try await eventually { try !Self.holds(node, "/c") }) }
        }
    }

    @Test(
        "a node that starts while PostgreSQL is down serves nothing it stored before, only what it fetches since, until it has caught up"
    )
    func startsWithoutJournal() async throws {
        try await Self.withFleet(edges: 1) { fleet in
            #expect(try await fleet.get(fleet.edges[0], "/h").text == "v1 of /h")
            #expect(try await eventually { try Self.holds(fleet.edges[0], "/h") })
            let stopped = fleet.edges[0]
            await stopped.stop()
            try await fleet.postgres.stopServer()
            fleet.versions.version.withLockedValue { $0 = 2 }
            fleet.edges[0] = try await fleet.restart(stopped)
            let edge = fleet.edges[0]
            // Its old copy is kept but not served: the shield is asked (it still has v1 — no
            // purge was posted, the edge just cannot know that).
            let before = fleet.origin.count("/h")
            let first = try await fleet.get(edge, "/h")
            #expect(first.headers.listMembers("Cache-Status").last?.contains("fwd=") == true, "\(first.headers)")
            // What it fetched since it started is served.
            let second = try await fleet.get(edge, "/h")
            #expect(second.headers.listMembers("Cache-Status").last?.hasPrefix("outpost; hit") == true)
            #expect(fleet.origin.count("/h") == before)
            let health = try await fleet.client.get("http://127.0.0.1:\(edge.adminPort)/health").text
            #expect(health.contains("are not served until this node has caught up"), "\(health)")
            try await fleet.postgres.startServer()
            try await fleet.waitUntilLive([edge])
            #expect(edge.server.store.hiddenBefore == nil)
            #expect(try await fleet.client.get("http://127.0.0.1:\(edge.adminPort)/health").text.contains("\"ok\""))
        }
    }

    @Test("a purge appended by another writer without NOTIFY is applied within journal_poll_interval")
    func polling() async throws {
        try await Self.withFleet(edges: 1, configure: { $0.cluster.journalPollInterval = 0.2 }) { fleet in
            _ = try await fleet.get(fleet.edges[0], "/n")
            try await fleet.postgres.sql(
                "INSERT INTO purges (kind, value, soft, time, node) VALUES ('url', '\(Self.key("/n"))', false, now(), 'elsewhere')"
            )
            #expect(try await eventually { try !Self.holds(fleet.edges[0], "/n") })
        }
    }

    @Test(
        "rows every known node applied are trimmed; a node forgotten after journal_retention marks everything stale when it returns"
    )
    func trimming() async throws {
        try await Self.withFleet(
            edges: 2,
            configure: {
                $0.cluster.journalPollInterval = 0.2
                $0.cluster.journalRetention = 2
            }
        ) { fleet in
            _ = try await fleet.get(fleet.edges[1], "/old")
            _ = try await fleet.purge(fleet.edges[0], #"{"url": "http://www.example.test/x"}"#)
            #expect(try await eventually { try await fleet.postgres.sql("SELECT count(*) FROM purges") == "0" })
            let stopped = fleet.edges[1]
            await stopped.stop()
            let answer = try await fleet.purge(fleet.edges[0], #"{"url": "http://www.example.test/y"}"#)
            let sequence = try #require(answer["sequence"] as? Int)
            // Edge 2 is forgotten after the retention and the row goes with it.
            #expect(
                try await eventually(timeout: .seconds(20)) {
                    let rows = try await fleet.postgres.sql("SELECT count(*) FROM purges")
                    let trimmed = try await fleet.postgres.sql("SELECT trimmed_through FROM journal_state")
                    return rows == "0" && trimmed == "\(sequence)"
                })
            fleet.edges[1] = try await fleet.restart(stopped)
            try await fleet.waitUntilLive([fleet.edges[1]])
            guard
                case .found(let record, _) = try fleet.edges[1].server.store.lookup(
                    Self.key("/old"), requestHeaders: HeaderFields())
            else {
                Issue.record("the stale copy should be kept (marked stale, not removed)")
                return
            }
            #expect(record.softPurgedAt != nil)
            #expect(try fleet.edges[1].server.store.journalApplied() >= Int64(sequence))
        }
    }
}
