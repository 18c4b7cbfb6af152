import Foundation
import Testing

@testable import EdgeProxy

/// `server.event_loops` (docs/configuration.md): by default one loop per CPU the process may run
/// on, so a node pinned to one CPU does not run two loops that only take turns on it.
@Suite("EdgeProxy: event loops", .serialized)
struct EventLoopsTests {
    @Test(
        "kernel CPU lists are counted",
        arguments: [
            ("0", 1), ("0-1", 2), ("0-3,8,10-11", 7), (" 2-3 ", 2), ("5,7", 2),
        ])
    func cpuLists(list: String, count: Int) {
        #expect(EventLoops.cpuCount(list: Substring(list)) == count)
    }

    @Test("malformed CPU lists are refused", arguments: ["", "a", "3-1", "-1", "1-", "1,,x"])
    func badCPULists(list: String) {
        #expect(EventLoops.cpuCount(list: Substring(list)) == nil)
    }

    @Test("a configured count wins; automatic is within the machine's cores and this process's CPUs")
    func counts() throws {
        #expect(EventLoops.count(configured: 3) == 3)
        let allowed = try #require(EventLoops.affinityCount())
        #expect(EventLoops.count(configured: 0) >= 1)
        #expect(EventLoops.count(configured: 0) <= allowed)
    }

    /// The "event loops" line `outpost serve` logs at start, from its standard error.
    static func loggedCount(cpus: String?, eventLoops: Int?) async throws -> String? {
        let origin = try await TestOrigin.start { _ in OriginResponse(body: "x") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("loops-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = directory + "/outpost.toml"
        try writeNodeConfig(
            config, origin: origin.url, store: directory + "/store",
            server: eventLoops.map { ["event_loops = \($0)"] } ?? [], log: ["level = \"info\"", "access = false"])
        let stderr = directory + "/stderr"
        let node = try await OutpostProcess.start(
            arguments: ["serve", "--config", config], cpus: cpus, stderrFile: stderr)
        // Logged before the listeners open, so it is there once the node says it listens.
        let text = try String(contentsOfFile: stderr, encoding: .utf8)
        await node.stop()
        await origin.stop()
        return text.split(separator: "\n").first { $0.contains("event loops") }.map(String.init)
    }

    @Test("outpost serve under taskset -c 0 runs one event loop; event_loops = 3 runs three")
    func serveCounts() async throws {
        let pinned = try #require(try await Self.loggedCount(cpus: "0", eventLoops: nil))
        #expect(pinned.contains("count=1") && pinned.contains("cpus_allowed=1"), "\(pinned)")
        let configured = try #require(try await Self.loggedCount(cpus: "0", eventLoops: 3))
        #expect(configured.contains("count=3"), "\(configured)")
    }
}
