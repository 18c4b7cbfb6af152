import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// Collapsed forwarding and streaming (docs/architecture.md, "Coalescing").
@Suite("EdgeProxy: coalescing and streaming")
struct CoalescingTests {
    @Test("concurrent requests for one URL make one upstream fetch")
    func coalesces() async throws {
        let gate = Gate()
        try await withOutpost(origin: { _ in
            await gate.wait()
            return OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "shared")
        }) { origin, outpost, client in
            try await withThrowingTaskGroup(of: TestResponse.self) { group in
                for _ in 0..<10 { group.addTask { try await client.get(outpost.base + "/hot") } }
                #expect(try await eventually { origin.count("/hot") == 1 && outpost.server.coalescedWaiters == 9 })
                gate.open()
                var collapsed = 0
                for try await response in group {
                    #expect(response.status == 200)
                    #expect(response.text == "shared")
                    if response.cacheStatus.contains("collapsed") { collapsed += 1 }
                }
                #expect(collapsed == 9)
            }
            #expect(origin.count("/hot") == 1)
        }
    }

    @Test("an uncacheable answer sends the waiters upstream and stops coalescing for uncacheable_ttl")
    func uncacheable() async throws {
        let gate = Gate()
        let second = Gate()
        try await withOutpost(origin: { request in
            await (request.headers["X-Phase"] == "2" ? second : gate).wait()
            return OriginResponse(headers: [("Cache-Control", "no-store")], body: "private")
        }) { origin, outpost, client in
            try await withThrowingTaskGroup(of: TestResponse.self) { group in
                for _ in 0..<5 { group.addTask { try await client.get(outpost.base + "/u") } }
                #expect(try await eventually { origin.count("/u") == 1 && outpost.server.coalescedWaiters == 4 })
                gate.open()
                for try await response in group { #expect(response.text == "private") }
            }
            #expect(origin.count("/u") == 5)
            // Now marked uncacheable: new requests are not serialised behind one another.
            // They all reach the origin while it still holds every one of them.
            let origin2Count = origin.count("/u")
            try await withThrowingTaskGroup(of: TestResponse.self) { group in
                for _ in 0..<3 { group.addTask { try await client.get(outpost.base + "/u", [("X-Phase", "2")]) } }
                #expect(try await eventually { origin.count("/u") == origin2Count + 3 })
                #expect(outpost.server.coalescedWaiters == 0)
                second.open()
                for try await response in group { #expect(response.status == 200) }
            }
        }
    }

    @Test("a miss streams: the client has the first bytes before the origin has sent the rest")
    func streamsMiss() async throws {
        let gate = Gate()
        let payload = testBytes(1_000_000)
        try await withOutpost(origin: { _ in
            var response = OriginResponse(headers: [("Cache-Control", "max-age=60")], bytes: payload, pieces: 4)
            response.gate = gate
            return response
        }) { origin, outpost, client in
            var request = HTTPClientRequest(url: outpost.base + "/stream")
            request.method = .GET
            let response = try await client.client.execute(request, timeout: .seconds(30))
            var iterator = response.body.makeAsyncIterator()
            var received: [UInt8] = []
            // The origin is held after its first piece: the first bytes must still arrive.
            while received.count < 1000, let chunk = try await iterator.next() { received += Array(buffer: chunk) }
            #expect(received.count >= 1000)
            #expect(Array(payload[0..<1000]) == Array(received[0..<1000]))
            gate.open()
            while let chunk = try await iterator.next() { received += Array(buffer: chunk) }
            #expect(received == payload)
            let hit = try await client.get(outpost.base + "/stream")
            #expect(hit.isHit)
            #expect(hit.body == payload)
            #expect(origin.count("/stream") == 1)
        }
    }
}
