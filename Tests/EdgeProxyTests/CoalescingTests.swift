import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
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

    @Test("a request for a large object being fetched gets its first bytes before the origin has sent the rest")
    func followerStreams() async throws {
        let gate = Gate()
        let payload = testBytes(1_000_000)
        try await withOutpost(origin: { _ in
            var response = OriginResponse(headers: [("Cache-Control", "max-age=60")], bytes: payload, pieces: 2)
            response.gate = gate
            return response
        }) { origin, outpost, client in
            var leaderRequest = HTTPClientRequest(url: outpost.base + "/large")
            leaderRequest.method = .GET
            let leader = try await client.client.execute(leaderRequest, timeout: .seconds(30))
            var leaderBody = leader.body.makeAsyncIterator()
            var led: [UInt8] = []
            while led.count < 1000, let chunk = try await leaderBody.next() { led += Array(buffer: chunk) }

            // The origin is held after its first half: a second request still gets bytes.
            let follower = try await client.client.execute(leaderRequest, timeout: .seconds(30))
            #expect(follower.headers["Cache-Status"].first?.contains("collapsed") == true)
            var followerBody = follower.body.makeAsyncIterator()
            var followed: [UInt8] = []
            while followed.count < 1000, let chunk = try await followerBody.next() { followed += Array(buffer: chunk) }
            #expect(Array(followed.prefix(1000)) == Array(payload.prefix(1000)))

            gate.open()
            while let chunk = try await leaderBody.next() { led += Array(buffer: chunk) }
            while let chunk = try await followerBody.next() { followed += Array(buffer: chunk) }
            #expect(led == payload)
            #expect(followed == payload)
            #expect(origin.count("/large") == 1)
        }
    }
}

@Suite("EdgeProxy: failures are shared, not multiplied")
struct SharedFailureTests {
    @Test("requests waiting on a fetch that times out get its 504 at the same time; the origin is asked once")
    func coalescedTimeout() async throws {
        try await withOutpost(
            // The ten requests must all arrive while the one fetch waits: a 3 s timeout leaves room
            // for a loaded machine (with 1 s, a request of the ten arriving late started a second
            // fetch when the whole suite ran at once).
            origin: { _ in OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "late", delay: .seconds(6))
            },
            configure: { $0.upstream.responseTimeout = 3 }
        ) { origin, outpost, client in
            let answers = try await withThrowingTaskGroup(of: (Int, String, String).self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        let response = try await client.get(outpost.base + "/hang")
                        return (response.status, response.headers["Proxy-Status"] ?? "", response.cacheStatus)
                    }
                }
                var all: [(Int, String, String)] = []
                for try await answer in group { all.append(answer) }
                return all
            }
            #expect(answers.map(\.0) == Array(repeating: 504, count: 10))
            #expect(answers.allSatisfy { $0.1.contains("error=http_response_timeout") })
            // One fetch; every other request waited on it and answered with its failure
            // (`collapsed`), none timed out on a fetch of its own.
            #expect(origin.count("/hang") == 1)
            #expect(answers.filter { $0.2.contains("collapsed") }.count == 9, "\(answers.map(\.2))")
        }
    }

    @Test("a waiter on a failed fetch with a stale copy it may use gets the stale copy")
    func coalescedFailureServesStale() async throws {
        let failing = NIOLockedValueBox(false)
        try await withOutpost(
            origin: { _ in
                failing.withLockedValue { $0 }
                    ? OriginResponse(status: 200, headers: [], body: "late", delay: .seconds(6))
                    : OriginResponse(headers: [("Cache-Control", "max-age=1, stale-if-error=600")], body: "old")
            },
            // Room for the first, prompt fetch on a loaded machine; the failing one outlasts it.
            configure: { $0.upstream.responseTimeout = 3 }
        ) { origin, outpost, client in
            let first = try await client.get(outpost.base + "/s")
            #expect(first.status == 200 && first.text == "old", "\(first.status) \(first.headers)")
            #expect(try await outpost.stored("/s"))
            outpost.clock.advance(by: 5)
            failing.withLockedValue { $0 = true }
            let bodies = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for _ in 0..<5 {
                    group.addTask {
                        let response = try await client.get(outpost.base + "/s")
                        return (response.status, response.text)
                    }
                }
                var all: [(Int, String)] = []
                for try await body in group { all.append(body) }
                return all
            }
            #expect(bodies.allSatisfy { $0 == (200, "old") })
            #expect(origin.count("/s") == 2)
        }
    }

    @Test(
        "a full origin connection pool queues up to upstream.max_queued_requests, then answers 503 connection_limit_reached"
    )
    func poolFull() async throws {
        try await withOutpost(
            origin: { _ in OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "late", delay: .seconds(6))
            },
            configure: {
                $0.upstream.responseTimeout = 3
                $0.upstream.maxConnectionsPerOrigin = 1
                $0.upstream.maxQueuedRequests = 1
            }
        ) { origin, outpost, client in
            let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for index in 0..<8 {
                    group.addTask {
                        let response = try await client.get(outpost.base + "/slow/\(index)")
                        return (response.status, response.headers["Proxy-Status"] ?? "")
                    }
                    // The first holds the only connection before the others come: under load the
                    // eight could otherwise arrive one response timeout apart, and none find the
                    // queue full.
                    if index == 0 { #expect(try await eventually { origin.count("/slow/0") == 1 }) }
                }
                var all: [(Int, String)] = []
                for try await answer in group { all.append(answer) }
                return all
            }
            let limited = answers.filter { $0.0 == 503 }
            #expect(!limited.isEmpty, "\(answers)")
            #expect(limited.allSatisfy { $0.1.contains("error=connection_limit_reached") })
            #expect(!answers.contains { $0.1.contains("http_protocol_error") })
            #expect(answers.allSatisfy { $0.0 == 503 || $0.0 == 504 }, "\(answers)")
        }
    }
}
