import Foundation
import HTTPCaching
import Testing

@testable import EdgeProxy

/// The hit path (HitHandler): requests the store can answer are answered on the event loop,
/// byte for byte as the pipeline would answer them, pipelined requests stay in order, and
/// large stored bodies stream chunk by chunk.
@Suite("Hit path")
struct HitPathTests {
    /// A response read off the wire.
    struct WireResponse {
        var status: Int
        var headers: HeaderFields
        var body: [UInt8]
    }

    /// Splits raw bytes into responses (Content-Length framed, as every stored answer is).
    static func parse(_ raw: String, headRequests: Set<Int> = []) -> [WireResponse] {
        var bytes = Array(raw.utf8)[...]
        var responses: [WireResponse] = []
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        while !bytes.isEmpty {
            guard let end = bytes.firstRange(of: separator) else { break }
            let head = String(decoding: bytes[bytes.startIndex..<end.lowerBound], as: UTF8.self)
            var lines = head.components(separatedBy: "\r\n")
            let statusLine = lines.removeFirst().split(separator: " ")
            guard statusLine.count >= 2, let status = Int(statusLine[1]) else { break }
            var headers = HeaderFields()
            for line in lines {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers.add(
                    String(line[..<colon]), String(line[line.index(after: colon)...].trimmingOWS()))
            }
            let length = headRequests.contains(responses.count) ? 0 : Int(headers["Content-Length"] ?? "0") ?? 0
            let bodyStart = end.upperBound
            let bodyEnd = min(bytes.endIndex, bodyStart + length)
            responses.append(
                WireResponse(
                    status: status, headers: headers, body: Array(bytes[bodyStart..<bodyEnd])))
            bytes = bytes[bodyEnd...]
        }
        return responses
    }

    static func hitPathCount(_ outpost: TestOutpost, _ client: TestClient) async throws -> Int {
        let admin = AdminClient(outpost: outpost, client: client, token: nil)
        return try admin.json(try await admin.get("/stats"))["hit_path"] as? Int ?? -1
    }

    static let textOrigin: TestOrigin.Handler = { request in
        var headers = [
            ("Cache-Control", "max-age=600"), ("ETag", "\"t-\(request.path)\""), ("Content-Type", "text/plain"),
            ("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"), ("Surrogate-Key", "k1 k2"),
        ]
        if request.path.hasPrefix("/vary") { headers.append(("Vary", "Accept-Language")) }
        let body = String(repeating: "outpost hit path \(request.path) ", count: 200)
        return OriginResponse(headers: headers, body: body)
    }

    @Test("stored answers leave the event loop only for what needs the origin")
    func hitsStayOnTheLoop() async throws {
        try await withOutpost(origin: Self.textOrigin) { _, outpost, client in
            #expect(try await client.get(outpost.base + "/a").cacheStatus.contains("fwd=uri-miss"))
            #expect(try await Self.hitPathCount(outpost, client) == 0)
            // The miss's response may reach the client before its object commits.
            #expect(try await eventually { try await client.get(outpost.base + "/a").isHit })
            let before = try await Self.hitPathCount(outpost, client)
            #expect(before >= 1)
            for _ in 0..<3 { #expect(try await client.get(outpost.base + "/a").isHit) }
            let conditional = try await client.get(outpost.base + "/a", [("If-None-Match", "\"t-/a\"")])
            #expect(conditional.status == 304)
            let range = try await client.get(outpost.base + "/a", [("Range", "bytes=0-9")])
            #expect(range.status == 206)
            #expect(try await Self.hitPathCount(outpost, client) == before + 5)
            // A miss still goes to the pipeline.
            #expect(try await client.get(outpost.base + "/b").cacheStatus.contains("fwd=uri-miss"))
            #expect(try await Self.hitPathCount(outpost, client) == before + 5)
        }
    }

    @Test("a request answered from the store starts no task; each request passed on starts one")
    func taskPerPassedRequest() async throws {
        try await withOutpost(origin: Self.textOrigin) { _, outpost, client in
            _ = try await client.get(outpost.base + "/a")
            #expect(try await outpost.stored("/a"))
            let host = "127.0.0.1:\(outpost.port)"
            let connection = try await KeepAliveConnection(port: outpost.port)
            let before = outpost.server.passedRequests
            for _ in 0..<3 {
                let hit = try await connection.get("/a", host: host)
                #expect(hit.head.contains("; hit"), "\(hit.head)")
            }
            #expect(outpost.server.passedRequests == before)
            let miss = try await connection.get("/b", host: host)
            #expect(
                miss.head.contains("fwd=uri-miss")
                    && miss.body == String(repeating: "outpost hit path /b ", count: 200), "\(miss.head)")
            #expect(outpost.server.passedRequests == before + 1)
            let pass = try await connection.get("/c", host: host)
            #expect(pass.body == String(repeating: "outpost hit path /c ", count: 200))
            #expect(outpost.server.passedRequests == before + 2)
            // The connection goes on after its passed requests, and hits stay on the hit path.
            let hit = try await connection.get("/a", host: host)
            #expect(hit.head.contains("; hit"))
            #expect(outpost.server.passedRequests == before + 2)
            await connection.close()
        }
    }

    /// The same stored response through the hit path (HTTP/1.1) and through the pipeline
    /// (HTTP/1.0, which the hit path leaves alone) must be the same response.
    @Test(
        "the hit path answers as the pipeline does",
        arguments: [
            ("GET", ""),
            ("HEAD", ""),
            ("GET", "Range: bytes=10-99\r\n"),
            ("GET", "Range: bytes=-5\r\n"),
            ("GET", "If-None-Match: \"t-/page\"\r\n"),
            ("GET", "If-Modified-Since: Tue, 01 Dec 2026 10:00:00 GMT\r\n"),
            ("GET", "Accept-Encoding: gzip\r\n"),
            ("GET", "Accept-Encoding: br, gzip\r\n"),
            ("GET", "Accept-Encoding: gzip\r\nRange: bytes=0-20\r\n"),
            ("GET", "Accept-Language: de\r\n"),
            ("GET", "Cache-Control: max-stale=10\r\n"),
        ])
    func sameAnswers(method: String, extra: String) async throws {
        try await withOutpost(origin: Self.textOrigin) { _, outpost, client in
            let path = extra.contains("Language") ? "/vary" : "/page"
            // Stored first (a GET with the same fields: a HEAD miss is not stored), and committed.
            // A request taking a coding waits until the coding is stored (made in the background).
            let warm = "GET \(path) HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\(extra)\r\n"
            #expect(
                try await eventually {
                    let response = Self.parse(try await rawExchange(port: outpost.port, warm)).first
                    return response?.headers["Cache-Status"]?.contains("hit") == true
                        && (!extra.contains("Accept-Encoding") || response?.headers["Content-Encoding"] != nil)
                })
            let before = try await Self.hitPathCount(outpost, client)
            let fast = try await rawExchange(
                port: outpost.port, "\(method) \(path) HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\(extra)\r\n")
            #expect(try await Self.hitPathCount(outpost, client) == before + 1, "HTTP/1.1 takes the hit path")
            let slow = try await rawExchange(
                port: outpost.port, "\(method) \(path) HTTP/1.0\r\nHost: h\r\n\(extra)\r\n")
            #expect(try await Self.hitPathCount(outpost, client) == before + 1, "HTTP/1.0 takes the pipeline")
            let heads: Set<Int> = method == "HEAD" ? [0] : []
            let a = try #require(Self.parse(fast, headRequests: heads).first)
            let b = try #require(Self.parse(slow, headRequests: heads).first)
            #expect(a.status == b.status)
            #expect(a.body == b.body)
            // Age and the ttl may tick between the two; the versions differ on the status line only.
            func comparable(_ headers: HeaderFields) -> [String] {
                headers.filter { !$0.name.equalsIgnoringASCIICase("Age") }.map { field in
                    let value = field.value.replacingOccurrences(
                        of: "; ttl=-?[0-9]+", with: "; ttl", options: .regularExpression)
                    return "\(field.name.asciiLowercased()): \(value)"
                }.sorted()
            }
            #expect(a.headers["Cache-Status"]?.contains("hit") == true)
            #expect(comparable(a.headers) == comparable(b.headers))
            #expect(a.headers["Surrogate-Key"] == nil)
        }
    }

    @Test("pipelined hits and misses are answered in order")
    func pipelined() async throws {
        try await withOutpost(origin: Self.textOrigin) { _, outpost, _ in
            let warm = "GET /one HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
            #expect(
                try await eventually {
                    Self.parse(try await rawExchange(port: outpost.port, warm)).first?.headers["Cache-Status"]?
                        .contains("hit") == true
                })
            let requests = ["/one", "/two", "/one", "/three", "/one"]
            let raw = requests.enumerated().map { index, path in
                "GET \(path) HTTP/1.1\r\nHost: h\r\n\(index == requests.count - 1 ? "Connection: close\r\n" : "")\r\n"
            }.joined()
            let responses = Self.parse(try await rawExchange(port: outpost.port, raw))
            try #require(responses.count == requests.count)
            for (path, response) in zip(requests, responses) {
                #expect(response.status == 200)
                #expect(String(decoding: response.body, as: UTF8.self).hasPrefix("outpost hit path \(path) "))
            }
            #expect(responses[0].headers["Cache-Status"]?.contains("hit") == true)
            #expect(responses[1].headers["Cache-Status"]?.contains("fwd=uri-miss") == true)
            #expect(responses[4].headers["Connection"] == "close")
        }
    }

    @Test("bodies of many chunks stream from the hit path, whole and in ranges")
    func chunkedBodies() async throws {
        let bytes = testBytes(50_000)
        try await withOutpost(
            origin: { _ in OriginResponse(headers: [("Cache-Control", "max-age=600")], bytes: bytes, pieces: 7) },
            configure: { $0.store.chunkSize = 4096 }
        ) { _, outpost, client in
            _ = try await client.get(outpost.base + "/big")
            #expect(try await eventually { try await client.get(outpost.base + "/big").isHit })
            let before = try await Self.hitPathCount(outpost, client)
            let whole = try await client.get(outpost.base + "/big")
            #expect(whole.isHit)
            #expect(whole.body == bytes)
            let range = try await client.get(outpost.base + "/big", [("Range", "bytes=4000-12289")])
            #expect(range.status == 206)
            #expect(range.headers["Content-Range"] == "bytes 4000-12289/50000")
            #expect(range.body == Array(bytes[4000...12289]))
            let tail = try await client.get(outpost.base + "/big", [("Range", "bytes=-1")])
            #expect(tail.body == [bytes[49_999]])
            #expect(try await Self.hitPathCount(outpost, client) == before + 3)
        }
    }

    @Test("bodies of chunks larger than a piece stream in pieces across chunk boundaries")
    func largeChunks() async throws {
        let bytes = testBytes(600_000, seed: 3)
        try await withOutpost(
            origin: { _ in OriginResponse(headers: [("Cache-Control", "max-age=600")], bytes: bytes, pieces: 9) }
        ) { _, outpost, client in
            _ = try await client.get(outpost.base + "/large")
            #expect(try await eventually { try await client.get(outpost.base + "/large").isHit })
            let before = try await Self.hitPathCount(outpost, client)
            let whole = try await client.get(outpost.base + "/large")
            #expect(whole.body == bytes)
            let across = try await client.get(outpost.base + "/large", [("Range", "bytes=200000-400000")])
            #expect(across.status == 206)
            #expect(across.body == Array(bytes[200_000...400_000]))
            let tail = try await client.get(outpost.base + "/large", [("Range", "bytes=-70000")])
            #expect(tail.body == Array(bytes[530_000...]))
            #expect(try await Self.hitPathCount(outpost, client) == before + 3)
        }
    }
}
