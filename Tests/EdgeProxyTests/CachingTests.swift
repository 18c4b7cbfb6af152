import Foundation
import HTTPCaching
import NIOHTTP1
import Testing

/// End to end: a real origin, a real Outpost and HTTP over loopback sockets.
@Suite("EdgeProxy: caching end to end")
struct CachingTests {
    @Test("RFC 9111 §3 / §4: a max-age response is stored on a miss and then served as a hit with Age and Via")
    func missThenHit() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60"), ("Content-Type", "text/plain")])) {
            origin, outpost, client in
            let first = try await client.get(outpost.base + "/a")
            #expect(first.status == 200)
            #expect(first.cacheStatus.contains("fwd=uri-miss"))
            #expect(first.cacheStatus.contains("stored"))
            #expect(first.cacheStatus.contains("fwd-status=200"))
            #expect(first.headers["Via"]?.contains("outpost") == true)
            outpost.clock.advance(by: 5)
            let second = try await client.get(outpost.base + "/a")
            #expect(second.status == 200)
            #expect(second.isHit)
            #expect(second.text == "body of /a")
            #expect(Int(second.headers["Age"] ?? "") ?? -1 >= 5)
            #expect(second.headers["Via"]?.contains("outpost") == true)
            #expect(second.headers["Date"] == first.headers["Date"])
            #expect(origin.count("/a") == 1)
        }
    }

    @Test("RFC 9111 §3: a status Outpost does not know is stored with explicit freshness, and only then")
    func unknownStatuses() async throws {
        try await withOutpost(origin: { request in
            switch request.path {
            case "/299": OriginResponse(status: 299, headers: [("Cache-Control", "max-age=60")], body: "two-nine-nine")
            case "/599":
                OriginResponse(status: 599, headers: [("Cache-Control", "s-maxage=60")], body: "five-nine-nine")
            case "/understand":
                OriginResponse(status: 299, headers: [("Cache-Control", "max-age=60, must-understand")], body: "m")
            default:
                OriginResponse(
                    status: 499, headers: [("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT")], body: "heuristic")
            }
        }) { origin, outpost, client in
            for path in ["/299", "/599"] {
                let first = try await client.get(outpost.base + path)
                #expect(first.status == Int(path.dropFirst()))
                #expect(try await outpost.stored(path, status: first.status))
                let second = try await client.get(outpost.base + path)
                #expect(second.isHit && second.status == first.status && second.text == first.text)
                #expect(origin.count(path) == 1)
            }
            // must-understand: only understood statuses; no explicit freshness: no heuristic.
            for path in ["/understand", "/heuristic"] {
                _ = try await client.get(outpost.base + path)
                let again = try await client.get(outpost.base + path)
                #expect(!again.isHit)
                #expect(origin.count(path) == 2)
            }
        }
    }

    @Test("RFC 9111 §4.2: a stale response is not served; the next request goes to the origin")
    func staleIsNotServed() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=10")])) { origin, outpost, client in
            _ = try await client.get(outpost.base + "/s")
            outpost.clock.advance(by: 11)
            let again = try await client.get(outpost.base + "/s")
            #expect(!again.isHit)
            #expect(again.cacheStatus.contains("fwd=stale"))
            #expect(origin.count("/s") == 2)
        }
    }

    @Test("RFC 9111 §4.1: Vary variants are stored side by side")
    func varyVariants() async throws {
        try await withOutpost(origin: { request in
            OriginResponse(
                headers: [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")],
                body: "lang=\(request.headers["Accept-Language"] ?? "none")")
        }) { origin, outpost, client in
            let en = try await client.get(outpost.base + "/v", [("Accept-Language", "en")])
            let fr = try await client.get(outpost.base + "/v", [("Accept-Language", "fr")])
            #expect(en.text == "lang=en" && fr.text == "lang=fr")
            #expect(fr.cacheStatus.contains("fwd=vary-miss"))
            let enAgain = try await client.get(outpost.base + "/v", [("Accept-Language", "en")])
            let frAgain = try await client.get(outpost.base + "/v", [("Accept-Language", "fr")])
            let none = try await client.get(outpost.base + "/v")
            #expect(enAgain.isHit && enAgain.text == "lang=en")
            #expect(frAgain.isHit && frAgain.text == "lang=fr")
            #expect(!none.isHit && none.text == "lang=none")
            #expect(origin.count("/v") == 3)
            // Accept-Language is compared as a set: same members, any order, case or spacing.
            _ = try await client.get(outpost.base + "/set", [("Accept-Language", "en, de")])
            #expect(try await outpost.stored("/set", requestHeaders: [("Accept-Language", "en, de")]))
            for value in ["eN,De", "de, en", "DE ,EN"] {
                let same = try await client.get(outpost.base + "/set", [("Accept-Language", value)])
                #expect(same.isHit && same.text == "lang=en, de", "\(value): \(same.cacheStatus)")
            }
            #expect(origin.count("/set") == 1)
        }
    }

    @Test(
        "RFC 9111 §3: no-store, private and Authorization responses are not stored",
        arguments: [
            ("no-store", [(String, String)]()),
            ("private, max-age=60", []),
            ("max-age=60", [("Authorization", "Bearer secret")]),
        ])
    func notStored(cacheControl: String, requestHeaders: [(String, String)]) async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", cacheControl)])) { origin, outpost, client in
            let first = try await client.get(outpost.base + "/n", requestHeaders)
            #expect(first.status == 200)
            #expect(!first.cacheStatus.contains("stored"))
            let second = try await client.get(outpost.base + "/n", requestHeaders)
            #expect(!second.isHit)
            #expect(origin.count("/n") == 2)
        }
    }

    @Test("RFC 9111 §4.4: a POST invalidates the stored response for its URL")
    func postInvalidates() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60")])) { origin, outpost, client in
            _ = try await client.get(outpost.base + "/p")
            #expect(try await client.get(outpost.base + "/p").isHit)
            let post = try await client.request(outpost.base + "/p", method: .POST, body: "form=1")
            #expect(post.status == 200)
            #expect(post.cacheStatus.contains("fwd=method"))
            #expect(origin.requests(to: "/p").last?.body == .init(string: "form=1"))
            let after = try await client.get(outpost.base + "/p")
            #expect(!after.isHit)
            #expect(origin.requests(to: "/p").filter { $0.method == "GET" }.count == 2)
        }
    }

    @Test("RFC 9111 §4.4: an error response to a POST does not invalidate")
    func failedPostKeeps() async throws {
        try await withOutpost(origin: { request in
            request.method == "POST"
                ? OriginResponse(status: 500, body: "no")
                : OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "ok")
        }) { _, outpost, client in
            _ = try await client.get(outpost.base + "/f")
            _ = try await client.request(outpost.base + "/f", method: .POST, body: "x")
            #expect(try await client.get(outpost.base + "/f").isHit)
        }
    }

    @Test("RFC 9110 §13.2.2: a conditional GET with the stored ETag gets 304 without reaching the origin")
    func conditionalFromCache() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60"), ("ETag", "\"v1\"")])) {
            origin, outpost, client in
            _ = try await client.get(outpost.base + "/c")
            let conditional = try await client.get(outpost.base + "/c", [("If-None-Match", "\"v1\"")])
            #expect(conditional.status == 304)
            #expect(conditional.headers["ETag"] == "\"v1\"")
            #expect(conditional.body.isEmpty)
            let mismatch = try await client.get(outpost.base + "/c", [("If-None-Match", "\"v0\"")])
            #expect(mismatch.status == 200)
            let failed = try await client.get(outpost.base + "/c", [("If-Match", "\"v0\"")])
            #expect(failed.status == 412)
            #expect(origin.count("/c") == 1)
        }
    }

    @Test("RFC 9111 §4.3.2: a client's conditional on a miss fetches the full response, stores it and answers 304")
    func conditionalOnMiss() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60"), ("ETag", "\"v1\"")])) {
            origin, outpost, client in
            let response = try await client.get(outpost.base + "/cm", [("If-None-Match", "\"v1\"")])
            #expect(response.status == 304)
            #expect(origin.requests(to: "/cm").first?.headers["If-None-Match"] == nil)
            let full = try await client.get(outpost.base + "/cm")
            #expect(full.isHit)
            #expect(full.text == "body of /cm")
        }
    }

    @Test("RFC 9111 §4.3: a stale response with an ETag is revalidated, updated by the 304 and then a hit")
    func revalidation() async throws {
        try await withOutpost(origin: { request in
            if request.headers["If-None-Match"] == "\"v1\"" {
                return OriginResponse(
                    status: 304, headers: [("ETag", "\"v1\""), ("Cache-Control", "max-age=100"), ("X-Fresh", "2")])
            }
            return OriginResponse(
                headers: [("Cache-Control", "max-age=1"), ("ETag", "\"v1\""), ("X-Fresh", "1")], body: "payload")
        }) { origin, outpost, client in
            _ = try await client.get(outpost.base + "/r")
            outpost.clock.advance(by: 2)
            let validated = try await client.get(outpost.base + "/r")
            #expect(validated.status == 200)
            #expect(validated.text == "payload")
            #expect(validated.cacheStatus.contains("fwd=stale"))
            #expect(validated.cacheStatus.contains("fwd-status=304"))
            #expect(validated.headers["X-Fresh"] == "2")
            #expect(origin.requests(to: "/r").last?.headers["If-None-Match"] == "\"v1\"")
            let hit = try await client.get(outpost.base + "/r")
            #expect(hit.isHit)
            #expect(hit.headers["Cache-Control"] == "max-age=100")
            #expect(origin.count("/r") == 2)
        }
    }

    @Test("RFC 9111 §5.2.1.4: request no-cache forces validation of a fresh response")
    func requestNoCache() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60"), ("ETag", "\"x\"")])) {
            origin, outpost, client in
            _ = try await client.get(outpost.base + "/nc")
            let forced = try await client.get(outpost.base + "/nc", [("Cache-Control", "no-cache")])
            #expect(forced.cacheStatus.contains("fwd=request"))
            #expect(origin.count("/nc") == 2)
        }
    }

    @Test("RFC 9111 §5.2.1.7: only-if-cached with nothing stored is 504")
    func onlyIfCached() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60")])) { origin, outpost, client in
            let response = try await client.get(outpost.base + "/o", [("Cache-Control", "only-if-cached")])
            #expect(response.status == 504)
            #expect(origin.count("/o") == 0)
        }
    }

    @Test("a 5 MB object is byte-identical on the miss and on the hit")
    func largeObject() async throws {
        let payload = testBytes(5_000_000)
        try await withOutpost(origin: { _ in
            OriginResponse(
                headers: [("Cache-Control", "max-age=60"), ("Content-Type", "application/octet-stream")],
                bytes: payload, pieces: 40)
        }) { origin, outpost, client in
            let miss = try await client.get(outpost.base + "/big")
            #expect(miss.body == payload)
            let hit = try await client.get(outpost.base + "/big")
            #expect(hit.isHit)
            #expect(hit.body == payload)
            #expect(hit.headers["Content-Length"] == "5000000")
            #expect(origin.count("/big") == 1)
        }
    }

    @Test("RFC 9110 §9.3.2: HEAD is answered from a stored GET response, without a body")
    func headFromGet() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60")])) { origin, outpost, client in
            let get = try await client.get(outpost.base + "/h")
            let head = try await client.request(outpost.base + "/h", method: .HEAD)
            #expect(head.isHit)
            #expect(head.body.isEmpty)
            #expect(head.headers["Content-Length"] == String(get.body.count))
            #expect(origin.count("/h") == 1)
        }
    }

    @Test("RFC 9110 §14: a single range is cut from a stored response; an unsatisfiable one is 416")
    func rangeOnHit() async throws {
        let payload = testBytes(100_000)
        try await withOutpost(origin: { _ in
            OriginResponse(headers: [("Cache-Control", "max-age=60"), ("ETag", "\"r\"")], bytes: payload)
        }) {
            _, outpost, client in
            _ = try await client.get(outpost.base + "/range")
            let part = try await client.get(outpost.base + "/range", [("Range", "bytes=1000-1999")])
            #expect(part.status == 206)
            #expect(part.headers["Content-Range"] == "bytes 1000-1999/100000")
            #expect(part.body == Array(payload[1000...1999]))
            let suffix = try await client.get(outpost.base + "/range", [("Range", "bytes=-500")])
            #expect(suffix.body == Array(payload[99_500...]))
            let outside = try await client.get(outpost.base + "/range", [("Range", "bytes=100000-")])
            #expect(outside.status == 416)
            #expect(outside.headers["Content-Range"] == "bytes */100000")
            let stale = try await client.get(
                outpost.base + "/range", [("Range", "bytes=0-9"), ("If-Range", "\"other\"")])
            #expect(stale.status == 200)
            #expect(stale.body.count == 100_000)
        }
    }

    @Test("objects are still hits after a restart")
    func restart() async throws {
        let origin = try await TestOrigin.start(staticOrigin([("Cache-Control", "max-age=600"), ("ETag", "\"p\"")]))
        let first = try await TestOutpost.start(origin: origin.url)
        let client = TestClient()
        // The listener's port changes between runs; the site's name (Host) does not.
        let host = [("Host", "www.example.test")]
        _ = try await client.get(first.base + "/persist", host)
        await first.stop()
        let second = try await TestOutpost.start(origin: origin.url, storePath: first.storePath)
        let again = try await client.get(second.base + "/persist", host)
        #expect(again.isHit)
        #expect(again.text == "body of /persist")
        #expect(Int(again.headers["Age"] ?? "") != nil)
        #expect(origin.count("/persist") == 1)
        await client.shutdown()
        await second.stop()
        second.removeStore()
        await origin.stop()
    }
}

@Suite("EdgeProxy: multipart ranges")
struct MultipartRangeTests {
    @Test("RFC 9110 §14.6: two ranges on a stored response are one multipart/byteranges 206")
    func twoRanges() async throws {
        let payload = testBytes(300_000)
        try await withOutpost(origin: { _ in
            OriginResponse(
                headers: [("Cache-Control", "max-age=60"), ("Content-Type", "application/octet-stream")], bytes: payload
            )
        }) { _, outpost, client in
            _ = try await client.get(outpost.base + "/m")
            // Crosses the 256 KiB chunk boundary on purpose.
            let response = try await client.get(outpost.base + "/m", [("Range", "bytes=0-9, 262140-262149")])
            #expect(response.status == 206)
            let contentType = try #require(response.headers["Content-Type"])
            #expect(contentType.hasPrefix("multipart/byteranges; boundary="))
            let boundary = String(contentType.split(separator: "=", maxSplits: 1)[1])
            #expect(response.headers["Content-Length"] == String(response.body.count))
            var expected: [UInt8] = []
            expected += Array(
                "--\(boundary)\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-9/300000\r\n\r\n"
                    .utf8)
            expected += payload[0...9]
            expected += Array(
                "\r\n--\(boundary)\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 262140-262149/300000\r\n\r\n"
                    .utf8)
            expected += payload[262_140...262_149]
            expected += Array("\r\n--\(boundary)--\r\n".utf8)
            #expect(response.body == expected)
            let overlapping = try await client.get(outpost.base + "/m", [("Range", "bytes=0-100, 50-60")])
            #expect(overlapping.status == 200)
            #expect(overlapping.body.count == 300_000)
        }
    }
}
