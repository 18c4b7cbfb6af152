import Foundation
import Testing

/// A full disk, simulated with the process's file-size limit (`prlimit --fsize`): the store's
/// data file cannot grow past it, and every write that would grow it fails (EFBIG), as on a
/// full file system.
@Suite("EdgeProxy: a full disk degrades, never stops")
struct DiskFullTests {
    private static func config(_ directory: String, origin: String) throws -> String {
        let path = directory + "/outpost.toml"
        try """
        [server]
        listen = "127.0.0.1:0"
        [upstream]
        default = "\(origin)"
        [store]
        path = "\(directory)/store"
        sync_commits = false
        max_store_size = "64MiB"
        disk_reserve = 0
        [admin]
        listen = "127.0.0.1:0"
        [log]
        level = "error"
        access = false
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(
        "on a full disk the store evicts to make room and keeps storing; every answer is the origin's; purges succeed; a restart on the full disk serves what is stored"
    )
    func evictsToMakeRoom() async throws {
        let small = testBytes(48 << 10, seed: 3)
        let origin = try await TestOrigin.start { _ in
            OriginResponse(
                headers: [("Cache-Control", "max-age=3600"), ("Content-Type", "application/octet-stream")],
                bytes: small, pieces: 4)
        }
        let directory = NSTemporaryDirectory() + "outpost-diskfull-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try Self.config(directory, origin: origin.url)
        let fileLimit = 2 << 20
        let client = TestClient()
        var server = try await OutpostProcess.start(arguments: ["serve", "--config", config], fileSizeLimit: fileLimit)
        let host = [("Host", "127.0.0.1:\(server.port)")]
        var base = "http://127.0.0.1:\(server.port)"

        // Three times what the data file may hold.
        for index in 0..<120 {
            let response = try await client.get(base + "/obj/\(index)", host)
            #expect(response.status == 200)
            #expect(response.body == small, "object \(index)")
        }
        let dataSize = try #require(
            try FileManager.default.attributesOfItem(atPath: directory + "/store/data.mdb")[.size] as? Int)
        #expect(dataSize <= fileLimit)
        // Still storing: a new object becomes a hit.
        _ = try await client.get(base + "/obj/fresh", host)
        #expect(
            try await eventually {
                let again = try await client.get(base + "/obj/fresh", host)
                return again.isHit && again.body == small
            })
        let admin = "http://127.0.0.1:\(server.adminPort)"
        let purge = try await client.request(
            admin + "/purge", method: .POST, headers: [("Content-Type", "application/json")],
            body: #"{"url": "\#(base)/obj/fresh"}"#)
        #expect(purge.status == 200 && purge.text.contains("\"purged\":1"), "\(purge.text)")
        let purged = try await client.get(base + "/obj/fresh", host)
        #expect(!purged.isHit && purged.body == small)
        #expect(
            try await eventually {
                let again = try await client.get(base + "/obj/fresh", host)
                return again.isHit
            })

        await server.stop()
        server = try await OutpostProcess.start(arguments: ["serve", "--config", config], fileSizeLimit: fileLimit)
        base = "http://127.0.0.1:\(server.port)"
        let again = try await client.get(base + "/obj/fresh", host)
        #expect(again.status == 200 && again.body == small)
        #expect(again.isHit, "\(again.cacheStatus)")
        await server.stop()
        await client.shutdown()
        await origin.stop()
    }

    @Test(
        "with no room even after evicting, the store is degraded: /health and the metric say so, misses are served with the origin's bytes, and it starts again so"
    )
    func degraded() async throws {
        let body = testBytes(96 << 10, seed: 5)
        let origin = try await TestOrigin.start { _ in
            OriginResponse(headers: [("Cache-Control", "max-age=3600")], bytes: body, pieces: 2)
        }
        let directory = NSTemporaryDirectory() + "outpost-diskfull-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try Self.config(directory, origin: origin.url)
        let fileLimit = 160 << 10
        let client = TestClient()
        var server = try await OutpostProcess.start(arguments: ["serve", "--config", config], fileSizeLimit: fileLimit)
        for index in 0..<4 {
            let response = try await client.get("http://127.0.0.1:\(server.port)/big/\(index)")
            #expect(response.status == 200 && response.body == body)
        }
        let admin = "http://127.0.0.1:\(server.adminPort)"
        #expect(
            try await eventually {
                let health = try await client.get(admin + "/health")
                return health.status == 200 && health.text.contains("\"degraded\"")
            })
        let metrics = try await client.get(admin + "/metrics")
        #expect(metrics.text.contains("outpost_store_degraded 1"))
        let stats = try await client.get(admin + "/stats")
        #expect(stats.text.contains("\"store_writes\":\"degraded\""))
        await server.stop()
        server = try await OutpostProcess.start(arguments: ["serve", "--config", config], fileSizeLimit: fileLimit)
        let after = try await client.get("http://127.0.0.1:\(server.port)/big/9")
        #expect(after.status == 200 && after.body == body)
        await server.stop()
        await client.shutdown()
        await origin.stop()
    }
}
