import Foundation
import OutpostTestSupport
import Testing

@testable import OutpostConfig

/// The operator's files in conf/: the Grafana dashboard queries only metrics /metrics has, and
/// the systemd unit is one systemd accepts, starting the binary as docs/operations.md says.
@Suite("conf/: the Grafana dashboard and the systemd unit")
struct OperationsFilesTests {
    static func confFile(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("conf/\(name)").path
    }

    /// The `outpost_` metric names a PromQL expression uses, without the histogram suffixes.
    static func metricNames(in expression: String) -> Set<String> {
        Set(
            expression.matches(of: /outpost_[a-z_]+/).map { match in
                var name = String(match.output)
                for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                    name.removeLast(suffix.count)
                }
                return name
            })
    }

    @Test("every outpost_ metric the dashboard queries is in /metrics of a node with peers and a journal")
    func dashboardMetricsExist() async throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.confFile("grafana-dashboard.json")))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 10)
        var queried: Set<String> = []
        for panel in panels {
            let targets = try #require(panel["targets"] as? [[String: Any]], "\(panel["title"] ?? "")")
            #expect(!targets.isEmpty)
            for target in targets { queried.formUnion(Self.metricNames(in: try #require(target["expr"] as? String))) }
        }
        #expect(queried.count >= 15, "\(queried.sorted())")

        let postgres = try await TestPostgres.start()
        let origin = try await TestOrigin.start(staticOrigin([("Cache-Control", "max-age=60")]))
        let journal = try JournalLocation(parsing: postgres.url)
        let nodes = [
            try await TestOutpost.start(origin: origin.url) { $0.cluster.purgeJournal = journal },
            try await TestOutpost.start(origin: origin.url) { $0.cluster.purgeJournal = journal },
        ]
        for node in nodes {
            var configuration = node.server.configuration
            configuration.cluster.selfURL = OriginURL(parsing: node.base)
            configuration.cluster.peers = nodes.compactMap { OriginURL(parsing: $0.base) }
            _ = try node.server.reload(configuration)
        }
        let client = TestClient()
        let node = nodes[0]
        #expect(try await client.get(node.base + "/a").status == 200)
        let purge = try await client.request(
            "http://127.0.0.1:\(node.adminPort)/purge", method: .POST, body: "{\"url\": \"\(node.base)/a\"}")
        #expect(purge.status == 200, "\(purge.text)")
        // Gauges are set as the node runs, and the purge is counted once the journal has
        // brought it back: wait until every queried metric is there.
        var metrics = ""
        var missing = queried
        _ = try await eventually(timeout: .seconds(20)) {
            metrics = try await client.get("http://127.0.0.1:\(node.adminPort)/metrics").text
            let exported = Set(
                metrics.split(separator: "\n").filter { !$0.hasPrefix("#") }.flatMap {
                    Self.metricNames(in: String($0))
                })
            missing = queried.subtracting(exported)
            return missing.isEmpty
        }
        #expect(missing.isEmpty, "queried by the dashboard, absent from /metrics: \(missing.sorted())\n\(metrics)")
        await client.shutdown()
        for node in nodes {
            await node.stop()
            node.removeStore()
        }
        await origin.stop()
        await postgres.destroy()
    }

    @Test(
        "the systemd unit: state directory, restart on failure, open files, check-config before start and reload; systemd-analyze verify accepts it"
    )
    func systemdUnit() throws {
        let unit = try String(contentsOfFile: Self.confFile("outpost.service"), encoding: .utf8)
        let lines = Set(unit.split(separator: "\n").map(String.init))
        for required in [
            "StateDirectory=outpost", "Restart=on-failure", "LimitNOFILE=65536",
            "ExecStart=/usr/local/bin/outpost serve --config /etc/outpost/outpost.toml",
            "ExecStartPre=/usr/local/bin/outpost check-config --quiet --config /etc/outpost/outpost.toml",
            "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes", "ProtectSystem=strict",
        ] {
            #expect(lines.contains(required), "missing: \(required)")
        }
        // systemd checks the unit's syntax and that its programs exist: this build's binary
        // stands in for /usr/local/bin/outpost.
        let directory = NSTemporaryDirectory() + "outpost-unit-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let copy = directory + "/outpost.service"
        try unit.replacingOccurrences(of: "/usr/local/bin/outpost", with: try outpostExecutable().path)
            .write(toFile: copy, atomically: true, encoding: .utf8)
        let verify = try ChildProcess.run("/usr/bin/systemd-analyze", ["verify", copy])
        #expect(
            verify.status == 0,
            "\(String(decoding: verify.stdout, as: UTF8.self)) \(String(decoding: verify.stderr, as: UTF8.self))")
        #expect(verify.stderr.isEmpty, "\(String(decoding: verify.stderr, as: UTF8.self))")
    }
}
