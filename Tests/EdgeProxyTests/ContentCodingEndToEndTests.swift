import Foundation
import HTTPCaching
import NIOCore
import OutpostTestSupport
import Testing

func htmlPage(_ size: Int) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = 0
    while bytes.count < size {
        bytes += Array("<li>item \(index): the quick brown fox jumps over the lazy dog</li>\n".utf8)
        index += 1
    }
    return Array(bytes.prefix(size))
}

/// Asks for `url` in `coding` until the answer comes in it: codings are produced in the
/// background after the first request that wants one (BackgroundCoding), never on a
/// request's path. True once a response came coded.
func waitForCoding(
    _ client: TestClient, _ url: String, _ coding: String, _ headers: [(String, String)] = []
) async throws -> Bool {
    try await eventually {
        try await client.get(url, headers + [("Accept-Encoding", coding)]).headers["Content-Encoding"] == coding
    }
}

@Suite("EdgeProxy: content coding end to end")
struct ContentCodingEndToEndTests {
    static let page = htmlPage(100_000)

    static func origin(_ contentType: String = "text/html; charset=utf-8") -> TestOrigin.Handler {
        { _ in
            OriginResponse(
                headers: [("Cache-Control", "max-age=600"), ("Content-Type", contentType), ("ETag", "\"page1\"")],
                bytes: page, pieces: 5)
        }
    }

    @Test("RFC 9110 §12.5.3: br, gzip and identity from one origin fetch, each decoding to the origin's bytes")
    func threeCodings() async throws {
        try await withOutpost(origin: Self.origin()) { origin, outpost, client in
            // The miss is the origin's bytes as they came, never coded on the way; it varies on
            // Accept-Encoding because later answers will be coded.
            let miss = try await client.get(outpost.base + "/page", [("Accept-Encoding", "gzip, deflate, br")])
            #expect(miss.cacheStatus.contains("fwd=uri-miss"))
            #expect(miss.headers["Content-Encoding"] == nil)
            #expect(miss.headers["Vary"]?.contains("Accept-Encoding") == true)
            #expect(miss.body == Self.page)
            #expect(try await waitForCoding(client, outpost.base + "/page", "br"))
            let br = try await client.get(outpost.base + "/page", [("Accept-Encoding", "gzip, deflate, br")])
            #expect(br.isHit)
            #expect(br.headers["Content-Encoding"] == "br")
            #expect(br.headers["Vary"]?.contains("Accept-Encoding") == true)
            #expect(try systemDecode("br", br.body) == Self.page)
            let gzip = try await client.get(outpost.base + "/page", [("Accept-Encoding", "gzip")])
            #expect(gzip.isHit)
            #expect(gzip.headers["Content-Encoding"] == "gzip")
            #expect(try systemDecode("gzip", gzip.body) == Self.page)
            let identity = try await client.get(outpost.base + "/page")
            #expect(identity.isHit)
            #expect(identity.headers["Content-Encoding"] == nil)
            #expect(identity.body == Self.page)
            #expect(origin.count("/page") == 1)
            #expect(origin.requests.first?.headers["Accept-Encoding"] == "identity")
            // Strong tags identify bytes: each coding has its own.
            let tags = Set([br, gzip, identity].compactMap { $0.headers["ETag"] })
            #expect(tags.count == 3)
            #expect(identity.headers["ETag"] == "\"page1\"")
            // The coded bytes are stored once: every br hit is the same bytes.
            let brHit = try await client.get(outpost.base + "/page", [("Accept-Encoding", "br")])
            #expect(brHit.isHit)
            #expect(brHit.body == br.body)
            #expect(brHit.headers["Content-Length"] == String(br.body.count))
        }
    }

    @Test(
        "RFC 9110 §12.5.3: q-values pick the coding; q=0 is never sent",
        arguments: [
            ("br;q=0.5, gzip;q=1.0", "gzip"), ("br;q=1.0, gzip;q=0.8", "br"), ("gzip;q=0, br;q=0", nil),
            ("*", "br"), ("br;q=0, *;q=0.1", "gzip"), ("identity", nil),
        ])
    func qValues(accept: String, expected: String?) async throws {
        try await withOutpost(origin: Self.origin()) { _, outpost, client in
            _ = try await client.get(outpost.base + "/q", [("Accept-Encoding", "br, gzip")])
            #expect(try await waitForCoding(client, outpost.base + "/q", "gzip"))
            let response = try await client.get(outpost.base + "/q", [("Accept-Encoding", accept)])
            #expect(response.status == 200)
            #expect(response.headers["Content-Encoding"] == expected, "\(accept)")
        }
    }

    @Test("RFC 9110 §12.5.3: identity refused and nothing else acceptable is 406")
    func notAcceptable() async throws {
        try await withOutpost(origin: Self.origin()) { _, outpost, client in
            _ = try await client.get(outpost.base + "/n", [("Accept-Encoding", "br")])
            #expect(try await waitForCoding(client, outpost.base + "/n", "br"))
            let response = try await client.get(outpost.base + "/n", [("Accept-Encoding", "identity;q=0, compress")])
            #expect(response.status == 406)
        }
    }

    @Test("image/png is not compressed; small bodies neither")
    func notCompressible() async throws {
        try await withOutpost(origin: { request in
            request.path == "/small"
                ? OriginResponse(
                    headers: [("Cache-Control", "max-age=60"), ("Content-Type", "text/plain")], body: "tiny")
                : OriginResponse(
                    headers: [("Cache-Control", "max-age=60"), ("Content-Type", "image/png")], bytes: Self.page)
        }) { _, outpost, client in
            for path in ["/image", "/small"] {
                let response = try await client.get(outpost.base + path, [("Accept-Encoding", "br, gzip")])
                #expect(response.headers["Content-Encoding"] == nil)
                #expect(response.headers["Vary"] == nil)
                let hit = try await client.get(outpost.base + path, [("Accept-Encoding", "br, gzip")])
                #expect(hit.headers["Content-Encoding"] == nil)
            }
        }
    }

    @Test("an origin-gzipped body is stored as sent and decoded for a client that does not accept gzip")
    func originGzipped() async throws {
        let gzipped = try systemTool("/bin/gzip", ["-c"], input: Self.page)
        try await withOutpost(origin: { _ in
            OriginResponse(
                headers: [
                    ("Cache-Control", "max-age=60"), ("Content-Type", "text/html"), ("Content-Encoding", "gzip"),
                    ("ETag", "\"gz\""),
                ], bytes: gzipped)
        }) { origin, outpost, client in
            let identityMiss = try await client.get(outpost.base + "/gz", [("Accept-Encoding", "identity")])
            #expect(identityMiss.headers["Content-Encoding"] == nil)
            #expect(identityMiss.body == Self.page)
            let gzipHit = try await client.get(outpost.base + "/gz", [("Accept-Encoding", "gzip")])
            #expect(gzipHit.isHit)
            #expect(gzipHit.headers["Content-Encoding"] == "gzip")
            #expect(gzipHit.body == gzipped)
            let identityHit = try await client.get(outpost.base + "/gz")
            #expect(identityHit.isHit)
            #expect(identityHit.body == Self.page)
            #expect(identityHit.headers["ETag"]?.hasPrefix("W/") == true)
            #expect(origin.count("/gz") == 1)
        }
    }

    @Test("RFC 9110 §14: ranges of the gzip representation join into the whole gzip body")
    func rangesOfCodedBytes() async throws {
        try await withOutpost(origin: Self.origin()) { _, outpost, client in
            _ = try await client.get(outpost.base + "/r", [("Accept-Encoding", "gzip")])
            #expect(try await waitForCoding(client, outpost.base + "/r", "gzip"))
            let whole = try await client.get(outpost.base + "/r", [("Accept-Encoding", "gzip")])
            let first = try await client.get(
                outpost.base + "/r", [("Accept-Encoding", "gzip"), ("Range", "bytes=0-999")])
            let rest = try await client.get(
                outpost.base + "/r", [("Accept-Encoding", "gzip"), ("Range", "bytes=1000-")])
            #expect(first.status == 206 && rest.status == 206)
            #expect(first.headers["Content-Encoding"] == "gzip")
            #expect(first.headers["Content-Range"] == "bytes 0-999/\(whole.body.count)")
            #expect(first.body + rest.body == whole.body)
            #expect(try systemDecode("gzip", first.body + rest.body) == Self.page)
        }
    }

    @Test("RFC 9110 §13.1.2: If-None-Match with a coded representation's tag gets 304")
    func conditionalOnCodedTag() async throws {
        try await withOutpost(origin: Self.origin()) { _, outpost, client in
            _ = try await client.get(outpost.base + "/c", [("Accept-Encoding", "br")])
            #expect(try await waitForCoding(client, outpost.base + "/c", "br"))
            let br = try await client.get(outpost.base + "/c", [("Accept-Encoding", "br")])
            let tag = try #require(br.headers["ETag"])
            #expect(tag == "\"page1-br\"")
            let again = try await client.get(outpost.base + "/c", [("Accept-Encoding", "br"), ("If-None-Match", tag)])
            #expect(again.status == 304)
            #expect(again.headers["ETag"] == tag)
            let identity = try await client.get(outpost.base + "/c", [("If-None-Match", tag)])
            #expect(identity.status == 200)
        }
    }

    @Test("codings are made on first demand, off the request path; a hit never compresses")
    func codingOnDemand() async throws {
        try await withOutpost(origin: Self.origin()) { origin, outpost, client in
            // Nobody asks for a coding: the object stays identity, and says it varies.
            let miss = try await client.get(outpost.base + "/d")
            #expect(miss.body == Self.page)
            #expect(try await eventually { try await client.get(outpost.base + "/d").isHit })
            await outpost.server.store.flush()
            #expect(outpost.server.codingCounts.coded == 0)
            // The first hit that would take br is answered at once with identity, from the store.
            let first = try await client.get(outpost.base + "/d", [("Accept-Encoding", "br")])
            #expect(first.isHit)
            #expect(first.headers["Content-Encoding"] == nil)
            #expect(first.headers["Vary"]?.contains("Accept-Encoding") == true)
            #expect(first.body == Self.page)
            // ... and its demand has both codings produced in the background.
            #expect(try await waitForCoding(client, outpost.base + "/d", "br"))
            let gzip = try await client.get(outpost.base + "/d", [("Accept-Encoding", "gzip")])
            #expect(gzip.isHit && gzip.headers["Content-Encoding"] == "gzip")
            #expect(try systemDecode("gzip", gzip.body) == Self.page)
            #expect(try await eventually { outpost.server.codingCounts.coded == 1 })
            #expect(origin.count("/d") == 1)
        }
    }

    @Test("compression.enabled = false: no codings are ever produced")
    func compressionDisabled() async throws {
        try await withOutpost(origin: Self.origin(), configure: { $0.compression.enabled = false }) {
            _, outpost, client in
            for _ in 0..<3 {
                let response = try await client.get(outpost.base + "/off", [("Accept-Encoding", "br, gzip")])
                #expect(response.headers["Content-Encoding"] == nil)
                #expect(response.body == Self.page)
            }
            await outpost.server.store.flush()
            let counts = outpost.server.codingCounts
            #expect(counts.coded == 0 && counts.dropped == 0 && counts.failed == 0)
        }
    }

    @Test("RFC 9110 §7.7: no-transform responses are never coded by Outpost")
    func noTransform() async throws {
        try await withOutpost(origin: { _ in
            OriginResponse(
                headers: [("Cache-Control", "max-age=60, no-transform"), ("Content-Type", "text/html")],
                bytes: Self.page)
        }) { _, outpost, client in
            for _ in 0..<3 {
                let response = try await client.get(outpost.base + "/nt", [("Accept-Encoding", "br")])
                #expect(response.headers["Content-Encoding"] == nil)
                #expect(response.body == Self.page)
            }
            await outpost.server.store.flush()
            #expect(outpost.server.codingCounts.coded == 0)
        }
    }
}

@Suite("EdgeProxy: ranges on a miss")
struct RangeOnMissTests {
    static func rangeOrigin(_ payload: [UInt8]) -> TestOrigin.Handler {
        { request in
            if let range = request.headers["Range"], range == "bytes=10-19" {
                return OriginResponse(
                    status: 206,
                    headers: [("Cache-Control", "max-age=60"), ("Content-Range", "bytes 10-19/\(payload.count)")],
                    bytes: Array(payload[10...19]))
            }
            return OriginResponse(
                headers: [("Cache-Control", "max-age=60"), ("Content-Type", "application/octet-stream")],
                bytes: payload,
                pieces: 8)
        }
    }

    @Test("a range on a miss is answered from a full fetch that fills the store")
    func answeredFromFullFetch() async throws {
        let payload = testBytes(500_000)
        try await withOutpost(origin: Self.rangeOrigin(payload)) { origin, outpost, client in
            let part = try await client.get(outpost.base + "/obj", [("Range", "bytes=300000-300099")])
            #expect(part.status == 206)
            #expect(part.headers["Content-Range"] == "bytes 300000-300099/500000")
            #expect(part.body == Array(payload[300_000...300_099]))
            #expect(origin.requests.first?.headers["Range"] == nil)
            #expect(try await eventually { try await client.get(outpost.base + "/obj").isHit })
            let whole = try await client.get(outpost.base + "/obj")
            #expect(whole.body == payload)
            #expect(origin.count("/obj") == 1)
            let outside = try await client.get(outpost.base + "/fresh", [("Range", "bytes=900000-")])
            #expect(outside.status == 416)
        }
    }

    @Test("a range of an object larger than range_fetch_max_size is forwarded")
    func largeObjectForwarded() async throws {
        let payload = testBytes(200_000)
        try await withOutpost(
            origin: Self.rangeOrigin(payload), configure: { $0.cache.rangeFetchMaxSize = 100_000 }
        ) { origin, outpost, client in
            let part = try await client.get(outpost.base + "/big", [("Range", "bytes=10-19")])
            #expect(part.status == 206)
            #expect(part.body == Array(payload[10...19]))
            #expect(origin.requests.last?.headers["Range"] == "bytes=10-19")
        }
    }
}

@Suite("EdgeProxy: stored partial content")
struct PartialContentTests {
    /// An origin that honours single ranges, with a strong validator.
    static func rangingOrigin(_ payload: [UInt8]) -> TestOrigin.Handler {
        { request in
            let headers = [("Cache-Control", "max-age=600"), ("ETag", "\"whole\""), ("Content-Type", "video/mp4")]
            guard let value = request.headers["Range"], value.hasPrefix("bytes="),
                case let bounds = value.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false),
                bounds.count == 2, let first = Int(bounds[0])
            else { return OriginResponse(headers: headers, bytes: payload, pieces: 4) }
            let last = min(Int(bounds[1]) ?? payload.count - 1, payload.count - 1)
            return OriginResponse(
                status: 206, headers: headers + [("Content-Range", "bytes \(first)-\(last)/\(payload.count)")],
                bytes: Array(payload[first...last]))
        }
    }

    @Test("RFC 9111 §3.3/§3.4: a 206 for a large object is stored as a part and answers ranges inside it")
    func storedPart() async throws {
        let payload = testBytes(300_000)
        try await withOutpost(
            origin: Self.rangingOrigin(payload), configure: { $0.cache.rangeFetchMaxSize = 100_000 }
        ) { origin, outpost, client in
            let first = try await client.get(outpost.base + "/video", [("Range", "bytes=1000-1999")])
            #expect(first.status == 206)
            #expect(first.body == Array(payload[1000...1999]))
            #expect(first.cacheStatus.contains("stored"))
            let inside = try await client.get(outpost.base + "/video", [("Range", "bytes=1200-1299")])
            #expect(inside.status == 206)
            #expect(inside.isHit)
            #expect(inside.headers["Content-Range"] == "bytes 1200-1299/300000")
            #expect(inside.body == Array(payload[1200...1299]))
            let requestsSoFar = origin.count("/video")
            let outside = try await client.get(outpost.base + "/video", [("Range", "bytes=5000-5099")])
            #expect(outside.status == 206)
            #expect(outside.body == Array(payload[5000...5099]))
            #expect(outside.cacheStatus.contains("fwd=partial"))
            #expect(origin.count("/video") > requestsSoFar)
            // A part never answers a request for the whole representation.
            let whole = try await client.get(outpost.base + "/video")
            #expect(whole.status == 200)
            #expect(whole.body == payload)
        }
    }
}

@Suite("EdgeProxy: combining stored parts")
struct PartCombinationTests {
    @Test("RFC 9111 §3.4: parts with the same strong validator combine, up to the complete object")
    func combine() async throws {
        let payload = testBytes(300_000)
        try await withOutpost(
            origin: PartialContentTests.rangingOrigin(payload), configure: { $0.cache.rangeFetchMaxSize = 100_000 }
        ) { origin, outpost, client in
            _ = try await client.get(outpost.base + "/v", [("Range", "bytes=0-99999")])
            _ = try await client.get(outpost.base + "/v", [("Range", "bytes=100000-199999")])
            #expect(
                try await outpost.stored("/v", status: 206) {
                    $0.response.headers["Content-Range"] == "bytes 0-199999/300000"
                })
            // Straddles the two parts: only a combined part can answer it.
            let straddle = try await client.get(outpost.base + "/v", [("Range", "bytes=99000-100999")])
            #expect(straddle.isHit)
            #expect(straddle.body == Array(payload[99_000...100_999]))
            #expect(straddle.headers["Content-Range"] == "bytes 99000-100999/300000")
            _ = try await client.get(outpost.base + "/v", [("Range", "bytes=200000-")])
            // That part commits after its client got the end of its response; with it the
            // parts are the complete response.
            #expect(try await outpost.stored("/v"))
            let requests = origin.count("/v")
            // Together the parts are the whole representation: a plain GET is a hit.
            let whole = try await client.get(outpost.base + "/v")
            #expect(whole.status == 200)
            #expect(whole.isHit)
            #expect(whole.body == payload)
            #expect(whole.headers["Content-Range"] == nil)
            #expect(origin.count("/v") == requests)
        }
    }
}

@Suite("EdgeProxy: forwarding every range")
struct ForwardRangeTests {
    @Test("range_fetch_max_size = 0 forwards ranges as sent and reuses the stored part")
    func forwardAll() async throws {
        let payload = testBytes(10_000)
        try await withOutpost(
            origin: PartialContentTests.rangingOrigin(payload), configure: { $0.cache.rangeFetchMaxSize = 0 }
        ) { origin, outpost, client in
            let first = try await client.get(outpost.base + "/p", [("Range", "bytes=10-19")])
            #expect(first.status == 206)
            #expect(origin.requests.first?.headers["Range"] == "bytes=10-19")
            #expect(origin.count("/p") == 1)
            let again = try await client.get(outpost.base + "/p", [("Range", "bytes=10-19")])
            #expect(again.isHit)
            #expect(again.body == Array(payload[10...19]))
            #expect(origin.count("/p") == 1)
        }
    }
}

@Suite("EdgeProxy: completing a stored part")
struct PartCompletionTests {
    @Test("RFC 9111 §3.4: a plain GET on a stored prefix asks only for the rest and answers with the whole 200")
    func completes() async throws {
        let payload = testBytes(50_000)
        try await withOutpost(
            origin: PartialContentTests.rangingOrigin(payload), configure: { $0.cache.rangeFetchMaxSize = 0 }
        ) { origin, outpost, client in
            _ = try await client.get(outpost.base + "/c", [("Range", "bytes=0-9999")])
            #expect(try await outpost.stored("/c", status: 206))
            let whole = try await client.get(outpost.base + "/c")
            #expect(whole.status == 200)
            #expect(whole.body == payload)
            #expect(whole.headers["Content-Length"] == "50000")
            #expect(whole.cacheStatus.contains("fwd=partial"))
            #expect(origin.requests.last?.headers["Range"] == "bytes=10000-")
            #expect(origin.requests.last?.headers["If-Range"] == "\"whole\"")
            #expect(try await outpost.stored("/c"))
            let hit = try await client.get(outpost.base + "/c")
            #expect(hit.isHit)
            #expect(hit.body == payload)
            #expect(origin.count("/c") == 2)
        }
    }
}
