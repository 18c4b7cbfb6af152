import Foundation
import HTTPCaching
import Logging
import NIOConcurrencyHelpers
import OutpostTestSupport
import Testing

@testable import EdgeProxy
@testable import OutpostConfig

/// `log.format`: the access log as text or as one JSON object per line (docs/operations.md).
@Suite("EdgeProxy: access log and JSON log lines")
struct AccessLogTests {
    /// A logger whose lines (JSON) are kept.
    final class Lines: Sendable {
        let kept = NIOLockedValueBox<[String]>([])
        var logger: Logger {
            Logger(label: "outpost.access") { [kept] label in
                JSONLogHandler(label: label) { line in kept.withLockedValue { $0.append(line) } }
            }
        }
        func objects() throws -> [[String: Any]] {
            try kept.withLockedValue { $0 }.map {
                #expect($0.hasSuffix("}\n") && $0.filter { $0 == "\n" }.count == 1, "one line each: \($0)")
                return try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            }
        }
    }

    @Test("a JSON line: time, level, logger, message, metadata with numbers as numbers and strings escaped")
    func jsonHandler() throws {
        let lines = Lines()
        lines.logger.warning(
            "odd \"text\"\nwith\tcontrol \u{1}",
            metadata: [
                "count": .stringConvertible(3), "ratio": .stringConvertible(0.5), "flag": .stringConvertible(true),
                "list": ["a", "b"], "nested": ["k": "v"], "quote": "say \"hi\" \\ there",
            ])
        let object = try #require(try lines.objects().first)
        let time = try #require(object["time"] as? String)
        #expect(time.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil, "\(time)")
        #expect(object["level"] as? String == "warning" && object["logger"] as? String == "outpost.access")
        #expect(object["message"] as? String == "odd \"text\"\nwith\tcontrol \u{1}")
        #expect(object["count"] as? Int == 3 && object["ratio"] as? Double == 0.5 && object["flag"] as? Bool == true)
        #expect(object["list"] as? [String] == ["a", "b"] && object["nested"] as? [String: String] == ["k": "v"])
        #expect(object["quote"] as? String == "say \"hi\" \\ there")
    }

    @Test("an access entry as JSON: client, method, url, status, bytes, duration, cache result, fwd, upstream time")
    func accessEntry() throws {
        let lines = Lines()
        let log = AccessLog(logger: lines.logger, enabled: true, format: .json)
        log.record(
            method: "GET", url: "http://www.example.com/a", status: 200, bytes: 1234, seconds: 0.01234,
            cacheStatus: CacheStatus(forward: .uriMiss, forwardStatus: 200, stored: true), peer: "192.0.2.7",
            upstreamSeconds: 0.0081)
        log.record(
            method: "GET", url: "http://www.example.com/a", status: 200, bytes: 1234, seconds: 0.0002,
            cacheStatus: .hit(ttl: 60), peer: "192.0.2.7")
        log.record(
            method: "GET", url: "http://www.example.com/b", status: 0, bytes: 0, seconds: 0, cacheStatus: nil,
            note: "aborted: client gone", peer: nil)
        let objects = try lines.objects()
        #expect(objects.count == 3)
        let miss = objects[0]
        #expect(miss["message"] as? String == "access" && miss["client"] as? String == "192.0.2.7")
        #expect(miss["method"] as? String == "GET" && miss["url"] as? String == "http://www.example.com/a")
        #expect(miss["status"] as? Int == 200 && miss["bytes"] as? Int == 1234)
        #expect(miss["duration_ms"] as? Double == 12.3 && miss["upstream_ms"] as? Double == 8.1)
        #expect(miss["cache"] as? String == "miss" && miss["fwd"] as? String == "uri-miss")
        #expect(miss["cache_status"] as? String == "outpost; fwd=uri-miss; fwd-status=200; stored")
        let hit = objects[1]
        #expect(hit["cache"] as? String == "hit" && hit["fwd"] == nil && hit["upstream_ms"] == nil)
        #expect(objects[2]["cache"] as? String == "aborted" && objects[2]["note"] as? String == "aborted: client gone")
        #expect(objects[2]["client"] as? String == "-")

        let off = Lines()
        AccessLog(logger: off.logger, enabled: false, format: .json).record(
            method: "GET", url: "u", status: 200, bytes: 1, seconds: 0, cacheStatus: .hit(ttl: 1), peer: nil)
        #expect(try off.objects().isEmpty)
    }

    @Test("outpost serve with log.format = \"json\": every stderr line is JSON; a miss has upstream_ms, the hit not")
    func serveWritesJSON() async throws {
        let origin = try await TestOrigin.start(staticOrigin([("Cache-Control", "max-age=60")]))
        let directory = NSTemporaryDirectory() + "outpost-jsonlog-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = directory + "/outpost.toml"
        try writeNodeConfig(config, origin: origin.url, store: directory + "/store", log: ["format = \"json\""])
        let stderr = directory + "/stderr"
        let server = try await OutpostProcess.start(arguments: ["serve", "--config", config], stderrFile: stderr)
        let client = TestClient()
        let base = "http://127.0.0.1:\(server.port)"
        #expect(try await client.get(base + "/j").status == 200)
        #expect(try await eventually { try await client.get(base + "/j").isHit })
        await client.shutdown()
        await server.stop()
        await origin.stop()
        let lines = try String(contentsOfFile: stderr, encoding: .utf8).split(separator: "\n")
        let objects = try lines.map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], "\($0)")
        }
        let access = objects.filter { $0["logger"] as? String == "outpost.access" }
        let miss = try #require(access.first)
        #expect(miss["cache"] as? String == "miss" && miss["fwd"] as? String == "uri-miss", "\(miss)")
        #expect((miss["upstream_ms"] as? Double).map { $0 >= 0 } == true, "\(miss)")
        #expect(miss["url"] as? String == base + "/j" && miss["client"] as? String == "127.0.0.1")
        let hit = try #require(access.last)
        #expect(hit["cache"] as? String == "hit" && hit["upstream_ms"] == nil, "\(hit)")
        #expect(objects.contains { $0["message"] as? String == "outpost serving" })
    }
}
