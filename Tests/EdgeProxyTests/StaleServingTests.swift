import Foundation
import HTTPCaching
import NIOConcurrencyHelpers
import NIOHTTP1
import Testing

/// RFC 5861, RFC 8246, RFC 9111 §4.2.4 and §4.3.5, RFC 9213 end to end. Objects go stale by
/// moving the test clock, never by sleeping.
@Suite("EdgeProxy: stale responses, immutable, targeted cache control")
struct StaleServingTests {
    @Test("RFC 5861 §3: inside stale-while-revalidate the stale copy answers at once and one background refresh runs")
    func staleWhileRevalidate() async throws {
        let refreshGate = Gate()
        let version = NIOLockedValueBox(1)
        try await withOutpost(origin: { request in
            let current = version.withLockedValue { value -> Int in
                defer { value += 1 }
                return value
            }
            if current > 1 { await refreshGate.wait() }
            let cacheControl = current == 1 ? "max-age=1, stale-while-revalidate=60" : "max-age=600"
            return OriginResponse(
                headers: [("Cache-Control", cacheControl), ("ETag", "\"v\(current)\"")], body: "version \(current)")
        }) { origin, outpost, client in
            _ = try await client.get(outpost.base + "/swr")
            outpost.clock.advance(by: 2)
            // The origin holds the refresh; the stale answers must not wait for it.
            var answers: [TestResponse] = []
            for _ in 0..<5 { answers.append(try await client.get(outpost.base + "/swr")) }
            for answer in answers {
                #expect(answer.text == "version 1")
                #expect(answer.isHit)
                #expect(answer.cacheStatus.contains("detail=\"stale-while-revalidate\""))
            }
            #expect(try await eventually { origin.count("/swr") == 2 })
            #expect(origin.requests(to: "/swr").last?.headers["If-None-Match"] == "\"v1\"")
            refreshGate.open()
            #expect(try await eventually { try await client.get(outpost.base + "/swr").text == "version 2" })
            #expect(origin.count("/swr") == 2)
            let fresh = try await client.get(outpost.base + "/swr")
            #expect(fresh.isHit)
            #expect(!fresh.cacheStatus.contains("stale"))
        }
    }

    @Test("RFC 5861 §3: past the stale-while-revalidate window the client waits for the origin")
    func pastTheWindow() async throws {
        try await withOutpost(
            origin: staticOrigin([("Cache-Control", "max-age=1, stale-while-revalidate=5")])
        ) { origin, outpost, client in
            _ = try await client.get(outpost.base + "/w")
            outpost.clock.advance(by: 10)
            let response = try await client.get(outpost.base + "/w")
            #expect(!response.isHit)
            #expect(response.cacheStatus.contains("fwd=stale"))
            #expect(origin.count("/w") == 2)
        }
    }

    @Test(
        "RFC 5861 §4 / RFC 9111 §4.2.4: with the origin down, a stale copy is served within its own stale-if-error or, without one, cache.stale_if_error (a day); must-revalidate and friends get 504",
        arguments: [
            ("max-age=1, stale-if-error=60", 200),
            ("max-age=1, stale-if-error=60, must-revalidate", 504),
            ("max-age=1, stale-if-error=60, proxy-revalidate", 504),
            ("s-maxage=1, stale-if-error=60", 504),
            ("max-age=1, stale-if-error=60, no-cache", 504),
            // Without a window of its own: the operator's default window (one day).
            ("max-age=1", 200),
            // Past the response's own window, the operator's does not stretch it.
            ("max-age=1, stale-if-error=2", 504),
        ])
    func originDown(cacheControl: String, expected: Int) async throws {
        let origin = try await TestOrigin.start(staticOrigin([("Cache-Control", cacheControl), ("ETag", "\"e\"")]))
        let outpost = try await TestOutpost.start(origin: origin.url)
        let client = TestClient()
        _ = try await client.get(outpost.base + "/sie")
        await origin.stop()
        outpost.clock.advance(by: 5)
        let response = try await client.get(outpost.base + "/sie")
        #expect(response.status == expected, "\(cacheControl)")
        if expected == 200 {
            #expect(response.text == "body of /sie")
            #expect(response.cacheStatus.contains("detail=\"stale-if-error\""))
            #expect(response.cacheStatus.contains("fwd=stale"))
        } else {
            // Refused, or reset when a pooled connection was cut: either way named in Proxy-Status.
            #expect(response.headers["Proxy-Status"]?.contains("outpost; error=") == true)
        }
        await client.shutdown()
        await outpost.stop()
        outpost.removeStore()
    }

    @Test("RFC 5861 §4: a 503 from the origin is replaced by the stale copy inside stale-if-error")
    func serverErrorServesStale() async throws {
        let failing = NIOLockedValueBox(false)
        try await withOutpost(origin: { _ in
            failing.withLockedValue { $0 }
                ? OriginResponse(status: 503, headers: [("Cache-Control", "no-store")], body: "down")
                : OriginResponse(headers: [("Cache-Control", "max-age=1, stale-if-error=60")], body: "good")
        }) { _, outpost, client in
            _ = try await client.get(outpost.base + "/e")
            failing.withLockedValue { $0 = true }
            outpost.clock.advance(by: 5)
            let response = try await client.get(outpost.base + "/e")
            #expect(response.status == 200)
            #expect(response.text == "good")
            #expect(response.cacheStatus.contains("fwd-status=503"))
            #expect(response.cacheStatus.contains("detail=\"stale-if-error\""))
            outpost.clock.advance(by: 100)
            let tooOld = try await client.get(outpost.base + "/e")
            #expect(tooOld.status == 503)
        }
    }

    @Test("RFC 5861 §4: stale-if-error as a request directive")
    func requestStaleIfError() async throws {
        let origin = try await TestOrigin.start(staticOrigin([("Cache-Control", "max-age=1")]))
        let outpost = try await TestOutpost.start(origin: origin.url)
        let client = TestClient()
        _ = try await client.get(outpost.base + "/r")
        await origin.stop()
        outpost.clock.advance(by: 30)
        let response = try await client.get(outpost.base + "/r", [("Cache-Control", "stale-if-error=120")])
        #expect(response.status == 200)
        #expect(response.cacheStatus.contains("stale-if-error"))
        await client.shutdown()
        await outpost.stop()
        outpost.removeStore()
    }

    @Test("RFC 8246: a fresh immutable object is a hit despite Cache-Control: no-cache on the request")
    func immutable() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=600, immutable")])) {
            origin, outpost, client in
            _ = try await client.get(outpost.base + "/i")
            let reload = try await client.get(outpost.base + "/i", [("Cache-Control", "no-cache")])
            #expect(reload.isHit)
            #expect(origin.count("/i") == 1)
        }
    }

    @Test("RFC 9213: CDN-Cache-Control governs this cache; Outpost-Cache-Control governs before it")
    func targetedFields() async throws {
        try await withOutpost(origin: { request in
            switch request.path {
            case "/cdn-fresh":
                return OriginResponse(
                    headers: [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=600")], body: "a")
            case "/cdn-nostore":
                return OriginResponse(
                    headers: [("Cache-Control", "max-age=600"), ("CDN-Cache-Control", "no-store")], body: "b")
            case "/own":
                return OriginResponse(
                    headers: [("CDN-Cache-Control", "no-store"), ("Outpost-Cache-Control", "max-age=600")], body: "c")
            default:
                return OriginResponse(
                    headers: [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=600, &&&")], body: "d")
            }
        }) { origin, outpost, client in
            for path in ["/cdn-fresh", "/cdn-nostore", "/own", "/invalid"] {
                _ = try await client.get(outpost.base + path)
                _ = try await client.get(outpost.base + path)
            }
            #expect(origin.count("/cdn-fresh") == 1)
            #expect(origin.count("/cdn-nostore") == 2)
            #expect(origin.count("/own") == 1)
            #expect(origin.count("/invalid") == 2)
        }
    }

    @Test("RFC 9111 §4.3.5: a HEAD response freshens the stored GET response")
    func headFreshens() async throws {
        try await withOutpost(origin: { request in
            request.method == "HEAD"
                ? OriginResponse(
                    headers: [
                        ("Cache-Control", "max-age=600"), ("ETag", "\"h\""), ("X-Seen", "head"),
                        ("Content-Length", "8"),
                    ], contentLength: false)
                : OriginResponse(headers: [("Cache-Control", "max-age=1"), ("ETag", "\"h\"")], body: "get body")
        }) { origin, outpost, client in
            _ = try await client.get(outpost.base + "/head")
            outpost.clock.advance(by: 5)
            let head = try await client.request(outpost.base + "/head", method: .HEAD)
            #expect(head.status == 200)
            let get = try await client.get(outpost.base + "/head")
            #expect(get.isHit)
            #expect(get.text == "get body")
            #expect(get.headers["X-Seen"] == "head")
            #expect(origin.requests(to: "/head").filter { $0.method == "GET" }.count == 1)
        }
    }

    @Test("cache.default_ttl gives responses without freshness information a lifetime")
    func defaultTTL() async throws {
        try await withOutpost(origin: staticOrigin([]), configure: { $0.cache.defaultTTL = 60 }) {
            origin, outpost, client in
            _ = try await client.get(outpost.base + "/plain")
            #expect(try await client.get(outpost.base + "/plain").isHit)
            #expect(origin.count("/plain") == 1)
        }
    }
}

@Suite("EdgeProxy: 304 updates")
struct NotModifiedUpdateTests {
    @Test("RFC 9111 §4.3.4: a 304 freshens every stored variant it selects")
    func everySelectedVariant() async throws {
        try await withOutpost(origin: { request in
            if request.headers["If-None-Match"] == "\"same\"" {
                return OriginResponse(status: 304, headers: [("ETag", "\"same\""), ("Cache-Control", "max-age=600")])
            }
            return OriginResponse(
                headers: [("Cache-Control", "max-age=1"), ("ETag", "\"same\""), ("Vary", "X-Variant")],
                body: "variant \(request.headers["X-Variant"] ?? "-")")
        }) { origin, outpost, client in
            _ = try await client.get(outpost.base + "/v", [("X-Variant", "a")])
            _ = try await client.get(outpost.base + "/v", [("X-Variant", "b")])
            outpost.clock.advance(by: 5)
            let validated = try await client.get(outpost.base + "/v", [("X-Variant", "a")])
            #expect(validated.cacheStatus.contains("fwd-status=304"))
            #expect(validated.text == "variant a")
            // The other variant was selected by the same 304 (same strong ETag): fresh now.
            let other = try await client.get(outpost.base + "/v", [("X-Variant", "b")])
            #expect(other.isHit)
            #expect(other.text == "variant b")
            #expect(origin.count("/v") == 3)
        }
    }
}
