import CacheStore
import EdgeProxy
import Foundation
import HTTPCaching
import Testing

@Suite("EdgeProxy: a damaged store never serves a wrong byte")
struct StoreIntegrityTests {
    /// Bytes unique to this run, so that the test can find them in the data file.
    private static func uniqueBody(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0x21...0x7E, using: &generator) }
    }

    /// Flips one byte inside every copy of `marker` in the store's data file.
    private static func damage(storePath: String, marker: [UInt8]) throws {
        let path = storePath + "/data.mdb"
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        var from = data.startIndex
        var count = 0
        while let found = data.range(of: Data(marker), in: from..<data.endIndex) {
            data[found.lowerBound + 7] ^= 0x55
            from = found.upperBound
            count += 1
        }
        #expect(count > 0)
        try data.write(to: URL(fileURLWithPath: path))
    }

    @Test(
        "a body damaged on disk, one chunk or several: after a restart the client gets the origin's bytes, the damage is counted in /stats and /metrics, and the object is stored anew",
        arguments: [3000, 700_000])
    func damagedBodyAfterRestart(size: Int) async throws {
        let small = Self.uniqueBody(size)
        let origin = try await TestOrigin.start { _ in
            OriginResponse(
                headers: [("Cache-Control", "max-age=3600"), ("Content-Type", "application/x-test")], bytes: small)
        }
        let client = TestClient()
        let first = try await TestOutpost.start(origin: origin.url)
        let stored = try await client.get(first.base + "/obj")
        #expect(stored.body == small)
        #expect(try await first.stored("/obj"))
        let host = [("Host", "127.0.0.1:\(first.port)")]
        await first.stop()
        // Damage the last chunk's bytes (for the large body, a chunk the hit path streams).
        try Self.damage(storePath: first.storePath, marker: Array(small.suffix(64)))

        let second = try await TestOutpost.start(
            origin: origin.url, storePath: first.storePath, configure: { $0.admin.token = "s3cret" })
        let admin = AdminClient(outpost: second, client: client)
        if size > 256 << 10 {
            // Several chunks: the head went out before the damaged chunk was read, so the
            // response is cut (the client sees an error, never other bytes); the object is
            // removed and the next request is a miss that gets the origin's bytes.
            let cut = try? await client.get(second.base + "/obj", host)
            #expect(cut == nil)
            #expect(try await eventually { try second.server.store.primaryKeys().isEmpty })
        }
        let answer = try await client.get(second.base + "/obj", host)
        #expect(answer.status == 200)
        #expect(answer.body == small)
        #expect(!answer.isHit)
        #expect(origin.count("/obj") == 2)
        let stats = try admin.json(try await admin.get("/stats"))
        #expect(stats["store_corruptions"] as? Int == 1)
        let metrics = String(decoding: try await admin.get("/metrics").body, as: UTF8.self)
        #expect(metrics.contains("outpost_store_corruptions_total 1"))
        // Stored anew: a hit with the right bytes.
        #expect(
            try await eventually {
                let again = try await client.get(second.base + "/obj", host)
                return again.isHit && again.body == small
            })
        #expect(try second.server.store.verify().isIntact)
        await client.shutdown()
        await second.stop()
        second.removeStore()
        await origin.stop()
    }
}
