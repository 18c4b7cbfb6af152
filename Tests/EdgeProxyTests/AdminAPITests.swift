import CacheStore
import Foundation
import HTTPCaching
import NIOConcurrencyHelpers
import OutpostTestSupport
import Testing

@testable import EdgeAdmin
@testable import EdgeProxy
@testable import EdgeTelemetry
@testable import OutpostConfig

/// An origin whose responses carry tags by path: /p/N is tagged `product-N catalog`,
/// /news/N `news`, everything else untagged. Every response has a strong ETag, so that soft
/// purges can be validated.
func taggedOrigin(_ status: @escaping @Sendable (OriginRequest) -> Int = { _ in 200 }) -> TestOrigin.Handler {
    { request in
        var headers = [("Cache-Control", "max-age=600"), ("ETag", "\"v-\(request.path)\"")]
        if request.path.hasPrefix("/p/") {
            headers.append(("Surrogate-Key", "product-\(request.path.dropFirst(3)) catalog"))
        } else if request.path.hasPrefix("/news/") {
            headers.append(("Cache-Tag", "news, front"))
        }
        if request.headers["If-None-Match"] == "\"v-\(request.path)\"" {
            return OriginResponse(status: 304, headers: headers)
        }
        return OriginResponse(status: status(request), headers: headers, body: "body of \(request.path)")
    }
}

struct AdminClient {
    let outpost: TestOutpost
    let client: TestClient
    var token: String? = "s3cret"

    var base: String { "http://127.0.0.1:\(outpost.adminPort)" }

    func post(_ path: String, _ body: String, token: String? = nil) async throws -> TestResponse {
        var headers = [("Content-Type", "application/json")]
        if let bearer = token ?? self.token { headers.append(("Authorization", "Bearer \(bearer)")) }
        return try await client.request(base + path, method: .POST, headers: headers, body: body)
    }

    func get(_ path: String) async throws -> TestResponse {
        try await client.request(base + path, headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [])
    }

    func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
    }
}

func withAdmin(
    origin: @escaping TestOrigin.Handler = taggedOrigin(),
    configure: @escaping (inout OutpostConfiguration) -> Void = { _ in },
    _ body: (TestOrigin, TestOutpost, TestClient, AdminClient) async throws -> Void
) async throws {
    try await withOutpost(
        origin: origin,
        configure: {
            $0.admin.token = "s3cret"
            configure(&$0)
        }
    ) { origin, outpost, client in
        try await body(origin, outpost, client, AdminClient(outpost: outpost, client: client))
    }
}

@Suite("EdgeProxy: admin API")
struct AdminAPITests {
    @Test("/health needs no token; every other route answers 401 without the right one")
    func authentication() async throws {
        try await withAdmin { _, _, _, admin in
            var anonymous = admin
            anonymous.token = nil
            #expect(try await anonymous.get("/health").status == 200)
            #expect(try await anonymous.get("/health").text.contains("\"ok\""))
            let refused = try await anonymous.post("/purge", #"{"url": "http://h/x"}"#)
            #expect(refused.status == 401)
            #expect(refused.headers["WWW-Authenticate"]?.hasPrefix("Bearer") == true)
            #expect(try admin.json(refused)["error"] != nil)
            #expect(try await anonymous.get("/stats").status == 401)
            #expect(try await anonymous.get("/metrics").status == 401)
            #expect(try await admin.post("/purge", #"{"url": "http://h/x"}"#, token: "wrong").status == 401)
            #expect(try await admin.post("/purge", #"{"url": "http://h/x"}"#, token: "s3cret-and-more").status == 401)
            #expect(try await admin.post("/purge", #"{"url": "http://h/x"}"#).status == 200)
        }
    }

    @Test("purges by URL, tag and prefix make exactly the expected objects be fetched again")
    func purgeTargets() async throws {
        try await withAdmin { origin, outpost, client, admin in
            let paths = ["/p/1", "/p/2", "/p/3", "/news/a", "/news/b", "/docs/x", "/docs/y", "/other"]
            func fetchAll() async throws {
                for path in paths { _ = try await client.get(outpost.base + path) }
            }
            func fetchCounts() -> [String: Int] {
                Dictionary(uniqueKeysWithValues: paths.map { ($0, origin.count($0)) })
            }
            try await fetchAll()
            try await fetchAll()
            #expect(fetchCounts().values.allSatisfy { $0 == 1 })

            // The URL as clients reach it: Host is 127.0.0.1:port.
            let host = "http://127.0.0.1:\(outpost.port)"
            let byURL = try await admin.post("/purge", #"{"url": "\#(host)/p/1"}"#)
            #expect(byURL.status == 200)
            #expect(try admin.json(byURL)["purged"] as? Int == 1)
            try await fetchAll()
            var counts = fetchCounts()
            #expect(counts["/p/1"] == 2)
            #expect(counts.filter { $0.key != "/p/1" }.values.allSatisfy { $0 == 1 })

            let byTag = try await admin.post("/purge", #"{"tags": ["catalog"]}"#)
            #expect(try admin.json(byTag)["purged"] as? Int == 3)
            let byCacheTag = try await admin.post("/purge", #"{"tags": ["front"]}"#)
            #expect(try admin.json(byCacheTag)["purged"] as? Int == 2)
            try await fetchAll()
            counts = fetchCounts()
            #expect(counts["/p/1"] == 3 && counts["/p/2"] == 2 && counts["/p/3"] == 2)
            #expect(counts["/news/a"] == 2 && counts["/news/b"] == 2)
            #expect(counts["/docs/x"] == 1 && counts["/docs/y"] == 1 && counts["/other"] == 1)

            let byPrefix = try await admin.post("/purge", #"{"prefix": "\#(host)/docs/"}"#)
            #expect(try admin.json(byPrefix)["purged"] as? Int == 2)
            try await fetchAll()
            counts = fetchCounts()
            #expect(counts["/docs/x"] == 2 && counts["/docs/y"] == 2 && counts["/other"] == 1)
            #expect(counts["/p/2"] == 2 && counts["/news/a"] == 2)
        }
    }

    @Test("a URL purge takes every variant and every coding; Surrogate-Key and Cache-Tag never reach clients")
    func variantsAndTagFields() async throws {
        let page = htmlPage(20_000)
        let handler: TestOrigin.Handler = { request in
            OriginResponse(
                headers: [
                    ("Cache-Control", "max-age=600"), ("Content-Type", "text/html"), ("Vary", "Accept-Language"),
                    ("Surrogate-Key", "page"), ("Cache-Tag", "page-tag"),
                ], bytes: page)
        }
        try await withAdmin(origin: handler) { origin, outpost, client, admin in
            for language in ["en", "fr"] {
                for coding in ["br", "gzip", "identity"] {
                    let response = try await client.get(
                        outpost.base + "/page", [("Accept-Language", language), ("Accept-Encoding", coding)])
                    #expect(response.headers["Surrogate-Key"] == nil)
                    #expect(response.headers["Cache-Tag"] == nil)
                }
            }
            #expect(origin.count("/page") == 2)
            for language in ["en", "fr"] {
                #expect(try await waitForCoding(client, outpost.base + "/page", "br", [("Accept-Language", language)]))
            }
            let purged = try await admin.post("/purge", #"{"url": "http://127.0.0.1:\#(outpost.port)/page"}"#)
            #expect(try admin.json(purged)["purged"] as? Int == 2)
            // Every coding went with its object: the next request is a miss, as it came.
            let again = try await client.get(
                outpost.base + "/page", [("Accept-Language", "fr"), ("Accept-Encoding", "br")])
            #expect(!again.isHit)
            #expect(again.headers["Content-Encoding"] == nil)
            #expect(again.body == page)
            #expect(origin.count("/page") == 3)
        }
    }

    @Test("cache.expose_surrogate_keys sends the tag fields on")
    func exposeTags() async throws {
        try await withAdmin(configure: { $0.cache.exposeSurrogateKeys = true }) { _, outpost, client, _ in
            let response = try await client.get(outpost.base + "/p/7")
            #expect(response.headers["Surrogate-Key"] == "product-7 catalog")
        }
    }

    @Test("a soft purge makes the next request revalidate (fwd=stale), then the object is fresh again")
    func softPurge() async throws {
        try await withAdmin { origin, outpost, client, admin in
            _ = try await client.get(outpost.base + "/p/5")
            #expect(try await client.get(outpost.base + "/p/5").isHit)
            let soft = try await admin.post("/purge", #"{"tags": ["product-5"], "soft": true}"#)
            #expect(try admin.json(soft)["purged"] as? Int == 1)
            #expect(try admin.json(soft)["soft"] as? Bool == true)
            let revalidated = try await client.get(outpost.base + "/p/5")
            #expect(revalidated.status == 200)
            #expect(revalidated.text == "body of /p/5")
            #expect(revalidated.cacheStatus.contains("fwd=stale"))
            #expect(revalidated.cacheStatus.contains("fwd-status=304"))
            #expect(revalidated.cacheStatus.contains("soft purge"))
            #expect(origin.requests(to: "/p/5").last?.headers["If-None-Match"] == "\"v-/p/5\"")
            #expect(try await client.get(outpost.base + "/p/5").isHit)
            #expect(origin.count("/p/5") == 2)
        }
    }

    @Test("a soft-purged object is still served stale under stale-if-error when the origin fails")
    func softPurgeStaleIfError() async throws {
        let failing = NIOLockedValueBox(false)
        let handler: TestOrigin.Handler = { request in
            if failing.withLockedValue({ $0 }) { return OriginResponse(status: 503, body: "down") }
            return OriginResponse(
                headers: [("Cache-Control", "max-age=600, stale-if-error=300"), ("Surrogate-Key", "s")],
                body: "kept")
        }
        try await withAdmin(origin: handler) { _, outpost, client, admin in
            _ = try await client.get(outpost.base + "/s")
            _ = try await admin.post("/purge", #"{"tags": ["s"], "soft": true}"#)
            failing.withLockedValue { $0 = true }
            let stale = try await client.get(outpost.base + "/s")
            #expect(stale.status == 200)
            #expect(stale.text == "kept")
            #expect(stale.cacheStatus.contains("stale-if-error"))
            // Past the stale-if-error window (counted from the purge) the failure shows.
            outpost.clock.advance(by: 400)
            #expect(try await client.get(outpost.base + "/s").status == 503)
        }
    }

    @Test("/stats is JSON with the store and request counters")
    func stats() async throws {
        try await withAdmin { _, outpost, client, admin in
            _ = try await client.get(outpost.base + "/p/1")
            _ = try await client.get(outpost.base + "/p/1")
            _ = try await client.get(outpost.base + "/p/2")
            _ = try await admin.post("/purge", #"{"tags": ["product-2"]}"#)
            let response = try await admin.get("/stats")
            #expect(response.status == 200)
            #expect(response.headers["Content-Type"] == "application/json")
            let stats = try admin.json(response)
            #expect(stats["entries"] as? Int == 1)
            #expect(stats["objects"] as? Int == 1)
            #expect((stats["bytes"] as? Int ?? 0) > 0)
            #expect(stats["hits"] as? Int == 1)
            #expect(stats["misses"] as? Int == 2)
            #expect(stats["purges"] as? Int == 1)
            #expect(stats["purged_objects"] as? Int == 1)
            #expect(stats["evictions"] as? Int == 0)
            #expect((stats["by_status"] as? [String: Int])?["200"] == 3)
            #expect((stats["by_result"] as? [String: Int])?["hit"] == 1)
        }
    }

    @Test("/metrics is Prometheus text with outpost_ series")
    func metrics() async throws {
        try await withAdmin { _, outpost, client, admin in
            _ = try await client.get(outpost.base + "/p/1")
            _ = try await client.get(outpost.base + "/p/1")
            _ = try await admin.post("/purge", #"{"url": "http://127.0.0.1:\#(outpost.port)/p/1", "soft": true}"#)
            let response = try await admin.get("/metrics")
            #expect(response.status == 200)
            #expect(response.headers["Content-Type"]?.hasPrefix("text/plain; version=0.0.4") == true)
            let samples = try PrometheusText.parse(response.text)
            #expect(samples.allSatisfy { $0.name.hasPrefix("outpost_") })
            #expect(samples.value("outpost_requests_total", ["result": "hit"]) == 1)
            #expect(samples.value("outpost_requests_total", ["result": "miss"]) == 1)
            #expect(samples.value("outpost_responses_total", ["status": "200"]) == 2)
            #expect(samples.value("outpost_purges_total", ["kind": "url", "mode": "soft"]) == 1)
            #expect(samples.value("outpost_upstream_latency_seconds_count", [:]) == 1)
            #expect((samples.value("outpost_store_bytes", [:]) ?? 0) > 0)
            #expect(samples.value("outpost_store_objects", [:]) == 1)
            #expect(samples.value("outpost_evictions_total", [:]) == 0)
            #expect(samples.value("outpost_coalesced_waits_total", [:]) == 0)
            #expect((samples.value("outpost_bytes_sent_total", [:]) ?? 0) > 0)
        }
    }

    @Test(
        "bad admin input gets a clear status and a JSON error naming the problem",
        arguments: [
            ("POST", "/purge", "{not json", 400, "not valid JSON"),
            ("POST", "/purge", #"{"url": "http://h/a", "colour": "red"}"#, 400, "colour"),
            ("POST", "/purge", #"{"url": "/relative"}"#, 400, "absolute"),
            ("POST", "/purge", #"{"tags": []}"#, 400, "empty"),
            ("POST", "/purge", #"{"tags": ["has space"]}"#, 400, "invalid tag"),
            ("POST", "/purge", #"{"url": "http://h/a", "prefix": "http://h/"}"#, 400, "only one"),
            ("POST", "/purge", #"{"soft": true}"#, 400, "nothing to purge"),
            ("POST", "/purge", #"{"url": "http://h/a", "soft": 1}"#, 400, "soft"),
            ("POST", "/purge", "", 400, "empty body"),
            ("POST", "/purge", "[1]", 400, "JSON object"),
            ("GET", "/purge", "", 405, "POST"),
            ("POST", "/stats", "", 405, "GET"),
            ("GET", "/nope", "", 404, "/nope"),
            ("POST", "/purge", String(repeating: " ", count: 70_000), 413, "max_body_size"),
        ])
    func badInput(method: String, path: String, body: String, status: Int, message: String) async throws {
        try await withAdmin { _, _, client, admin in
            let response = try await client.request(
                admin.base + path, method: .init(rawValue: method),
                headers: [("Authorization", "Bearer s3cret")], body: body.isEmpty ? nil : body)
            #expect(response.status == status)
            let error = try admin.json(response)["error"] as? String
            #expect(error?.contains(message) == true, "\(error ?? "no error")")
        }
    }

    @Test("a request without the token gets 401 before its body is read, even a body over admin.max_body_size")
    func unauthorizedBeforeBody() async throws {
        try await withAdmin { _, outpost, _, _ in
            let answer = try await rawExchange(
                port: outpost.adminPort,
                "POST /purge HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n"
                    + "Content-Length: 10485760\r\n\r\n{\"url\": \"http://h/",
                deadline: .seconds(10))
            #expect(answer.hasPrefix("HTTP/1.1 401 "), "\(answer)")
            #expect(answer.contains("WWW-Authenticate: Bearer"))
            #expect(answer.contains("Connection: close"))
        }
    }

    @Test(
        "the admin listener runs on the traffic front end: keep-alive and HEAD, and requests checked as traffic's are")
    func sharedFrontEnd() async throws {
        try await withAdmin { _, outpost, _, _ in
            // Several requests on one connection, each answered in turn.
            let kept = try await rawExchange(
                port: outpost.adminPort,
                [
                    "GET /health HTTP/1.1\r\nHost: admin\r\n\r\n",
                    "GET /stats HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer s3cret\r\n\r\n",
                    "GET /health HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
                ])
            #expect(kept.components(separatedBy: "HTTP/1.1 200 OK\r\n").count == 4, "\(kept)")
            #expect(kept.components(separatedBy: "{\"status\"").count == 3, "\(kept)")
            let head = try await rawExchange(
                port: outpost.adminPort,
                "HEAD /stats HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n")
            #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n") && head.hasSuffix("\r\n\r\n"), "\(head)")
            // RequestValidation, as on the traffic listener: a JSON error, and the connection closes.
            let cases: [(String, String)] = [
                ("GET /health HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "),
                ("GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\r\nHost: admin\r\n\r\n", "HTTP/1.1 414 "),
                ("TRACE /health HTTP/1.1\r\nHost: admin\r\n\r\n", "HTTP/1.1 501 "),
            ]
            for (request, status) in cases {
                let answer = try await rawExchange(port: outpost.adminPort, request)
                #expect(answer.hasPrefix(status), "\(answer)")
                #expect(answer.contains("Connection: close") && answer.contains("{\"error\""), "\(answer)")
            }
            // Framing the parser itself refuses (RFC 9112 §6.3) gets the front end's 400.
            let smuggled = try await rawExchange(
                port: outpost.adminPort,
                "POST /purge HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer s3cret\r\n"
                    + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
            #expect(smuggled.hasPrefix("HTTP/1.1 400 ") && smuggled.contains("Connection: close"), "\(smuggled)")
        }
    }

    @Test("a purged object stays purged after a restart")
    func purgeSurvivesRestart() async throws {
        let origin = try await TestOrigin.start(taggedOrigin())
        let first = try await TestOutpost.start(origin: origin.url, configure: { $0.admin.token = "s3cret" })
        let client = TestClient()
        _ = try await client.get(first.base + "/p/1")
        _ = try await client.get(first.base + "/p/2")
        let admin = AdminClient(outpost: first, client: client)
        #expect(try admin.json(try await admin.post("/purge", #"{"tags": ["product-1"]}"#))["purged"] as? Int == 1)
        await first.stop()
        let second = try await TestOutpost.start(origin: origin.url, storePath: first.storePath)
        // The first instance's Host, so that the keys are the ones stored.
        let again = try await client.get(second.base + "/p/1", [("Host", "127.0.0.1:\(first.port)")])
        #expect(!again.isHit)
        let kept = try await client.get(second.base + "/p/2", [("Host", "127.0.0.1:\(first.port)")])
        #expect(kept.isHit)
        #expect(origin.count("/p/1") == 2)
        #expect(origin.count("/p/2") == 1)
        await client.shutdown()
        await second.stop()
        second.removeStore()
        await origin.stop()
    }

    @Test("the admin listener refuses a non-loopback address without a token")
    func refusesExposedAdmin() async throws {
        let origin = try await TestOrigin.start(taggedOrigin())
        await #expect(throws: ConfigurationError.self) {
            let outpost = try await TestOutpost.start(
                origin: origin.url, configure: { $0.admin.listen = SocketAddressSpec(host: "0.0.0.0", port: 0) })
            await outpost.stop()
            outpost.removeStore()
        }
        await origin.stop()
    }
}

@Suite("EdgeProxy: admin request parsing")
struct AdminParsingTests {
    @Test(
        "POST /purge bodies",
        arguments: [
            (#"{"url": "HTTP://Example.COM:80/a?b#frag"}"#, "url http://example.com/a?b soft=false"),
            (
                #"{"prefix": "https://example.com:443/docs/", "soft": true}"#,
                "prefix http://example.com/docs/ soft=true"
            ),
            (#"{"url": "https://example.com:8443/a"}"#, "url http://example.com:8443/a soft=false"),
            (#"{"tags": ["a", "b", "a"], "soft": false}"#, "tags a,b soft=false"),
        ])
    func valid(body: String, expected: String) throws {
        let parsed = try PurgeRequest.parse(Array(body.utf8))
        let target: String
        switch parsed.target {
        case .url(let url): target = "url \(url)"
        case .prefix(let prefix): target = "prefix \(prefix)"
        case .tags(let tags): target = "tags \(tags.joined(separator: ","))"
        }
        #expect("\(target) soft=\(parsed.soft)" == expected)
    }

    @Test(
        "RFC 6750 bearer tokens",
        arguments: [
            ("Bearer s3cret", true), ("bearer s3cret", true), ("Bearer  s3cret", true), ("Bearer s3cre", false),
            ("Bearer s3crett", false), ("Basic s3cret", false), ("s3cret", false), ("Bearer", false), ("", false),
        ])
    func bearer(header: String, accepted: Bool) {
        #expect(AdminToken.authorizes(header, token: "s3cret") == accepted)
    }

    @Test("the token comes from the environment first, then the token file; exposure without one is refused")
    func tokenSources() throws {
        let file = NSTemporaryDirectory() + "outpost-token-" + UUID().uuidString
        try "from-file\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        var configuration = OutpostConfiguration()
        configuration.admin.tokenFile = file
        try AdminToken.resolve(&configuration, environment: [:])
        #expect(configuration.admin.token == "from-file")
        try AdminToken.resolve(&configuration, environment: ["OUTPOST_ADMIN_TOKEN": "from-env"])
        #expect(configuration.admin.token == "from-env")
        var exposed = OutpostConfiguration()
        exposed.admin.listen = SocketAddressSpec(host: "0.0.0.0", port: 8090)
        #expect(throws: ConfigurationError.self) { try AdminToken.resolve(&exposed, environment: [:]) }
        exposed.admin.tokenFile = file + "-missing"
        #expect(throws: ConfigurationError.self) { try AdminToken.resolve(&exposed, environment: [:]) }
        try AdminToken.resolve(&exposed, environment: ["OUTPOST_ADMIN_TOKEN": "t"])
        #expect(exposed.admin.token == "t")
    }
}

/// A small reader of the Prometheus text exposition format (version 0.0.4): every line is a
/// comment (`# HELP`, `# TYPE`) or `name{label="value",...} number`.
struct PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    struct Malformed: Error, CustomStringConvertible {
        let line: String
        var description: String { "not a Prometheus sample line: \(line)" }
    }

    static func parse(_ text: String) throws -> [Sample] {
        var samples: [Sample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.isEmpty {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw Malformed(line: String(line))
            }
            let series = line[..<space]
            var name = String(series)
            var labels: [String: String] = [:]
            if let open = series.firstIndex(of: "{") {
                guard series.hasSuffix("}") else { throw Malformed(line: String(line)) }
                name = String(series[..<open])
                let body = series[series.index(after: open)..<series.index(before: series.endIndex)]
                for pair in body.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2, parts[1].hasPrefix("\""), parts[1].hasSuffix("\"") else {
                        throw Malformed(line: String(line))
                    }
                    labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
                }
            }
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }) else {
                throw Malformed(line: String(line))
            }
            samples.append(Sample(name: name, labels: labels, value: value))
        }
        return samples
    }
}

extension [PrometheusText.Sample] {
    func value(_ name: String, _ labels: [String: String]) -> Double? {
        first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
    }
}

@Suite("EdgeProxy: request results as counted")
struct CacheResultTests {
    @Test(
        "Cache-Status → the result /stats and /metrics count",
        arguments: [
            ("outpost; hit; ttl=5", CacheResult.hit),
            ("outpost; hit; detail=stale-while-revalidate", .stale),
            ("outpost; hit; detail=max-stale", .stale),
            ("outpost; fwd=stale; detail=stale-if-error", .stale),
            ("outpost; fwd=uri-miss; stored", .miss),
            ("outpost; fwd=vary-miss", .miss),
            ("outpost; fwd=stale; fwd-status=304", .revalidated),
            ("outpost; fwd=request; fwd-status=304", .revalidated),
            ("outpost; fwd=stale; fwd-status=200; stored", .refreshed),
            ("outpost; fwd=request; detail=no-store", .pass),
            ("outpost; fwd=partial", .partial),
            ("outpost; fwd=method", .pass),
            ("outpost; fwd=bypass", .pass),
        ])
    func classify(header: String, expected: CacheResult) {
        var status = CacheStatus()
        for member in header.split(separator: ";").dropFirst().map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let parts = member.split(separator: "=", maxSplits: 1).map(String.init)
            switch parts[0] {
            case "hit": status.hit = true
            case "fwd": status.forward = CacheStatus.Forward(rawValue: parts[1])
            case "fwd-status": status.forwardStatus = Int(parts[1])
            case "detail": status.detail = CacheStatus.Detail(parsing: parts[1])
            default: break
            }
        }
        #expect(CacheResult(status) == expected)
    }
}

@Suite("EdgeProxy: purges racing a fetch")
struct PurgeRaceEndToEndTests {
    @Test("a purge landing while the origin is still answering keeps that answer out of the store")
    func purgeDuringFetch() async throws {
        let gate = Gate()
        let first = NIOLockedValueBox(true)
        let handler: TestOrigin.Handler = { _ in
            var response = OriginResponse(headers: [("Cache-Control", "max-age=600")], body: "old")
            if first.withLockedValue({ value in
                defer { value = false }
                return value
            }) {
                response.headGate = gate
            } else {
                response = OriginResponse(headers: [("Cache-Control", "max-age=600")], body: "new")
            }
            return response
        }
        try await withAdmin(origin: handler) { origin, outpost, client, admin in
            async let slow = client.get(outpost.base + "/race")
            #expect(try await eventually { origin.count("/race") == 1 })
            let purged = try await admin.post("/purge", #"{"url": "http://127.0.0.1:\#(outpost.port)/race"}"#)
            #expect(purged.status == 200)
            gate.open()
            #expect(try await slow.text == "old")
            let next = try await client.get(outpost.base + "/race")
            #expect(next.text == "new")
            #expect(!next.isHit)
        }
    }

    @Test("loopback is 127.0.0.0/8, ::1 and localhost, written as such")
    func loopback() {
        #expect(AdminToken.isLoopback("127.0.0.1"))
        #expect(AdminToken.isLoopback("127.1.2.3"))
        #expect(AdminToken.isLoopback("[::1]"))
        #expect(AdminToken.isLoopback("localhost"))
        #expect(!AdminToken.isLoopback("127.example.com"))
        #expect(!AdminToken.isLoopback("0.0.0.0"))
        #expect(!AdminToken.isLoopback("10.0.0.1"))
        #expect(!AdminToken.isLoopback("127.0.0.256"))
    }

    @Test("a purge URL with control characters is refused, and not echoed raw")
    func controlCharacters() throws {
        #expect(throws: PurgeRequest.Invalid.self) {
            try PurgeRequest.parse(Array(#"{"url": "http://h/a\nlevel=error"}"#.utf8))
        }
        do {
            _ = try PurgeRequest.parse(Array(#"{"url": "http://h/a\nb"}"#.utf8))
        } catch {
            #expect(!error.message.contains("\n"))
        }
    }
}

@Suite("EdgeProxy: responses that set cookies (cache.set_cookie)")
struct SetCookieTests {
    static let origin: TestOrigin.Handler = { request in
        OriginResponse(
            headers: [("Cache-Control", "max-age=60"), ("Set-Cookie", "session=\(request.path.dropFirst())")],
            body: "page \(request.path)")
    }

    @Test(
        "pass never stores them; strip stores them without the cookie; store replays it; /stats counts each",
        arguments: [SetCookiePolicy.pass, .strip, .store])
    func policies(policy: SetCookiePolicy) async throws {
        try await withAdmin(origin: Self.origin, configure: { $0.cache.setCookie = policy }) {
            origin, outpost, client, admin in
            let first = try await client.get(outpost.base + "/alice")
            // The client whose request went to the origin always gets its cookie.
            #expect(first.headers["Set-Cookie"] == "session=alice")
            if policy != .pass { #expect(try await outpost.stored("/alice")) }
            let second = try await client.get(outpost.base + "/alice")
            #expect(second.text == "page /alice")
            switch policy {
            case .pass:
                #expect(!second.isHit)
                #expect(second.headers["Set-Cookie"] == "session=alice")
                #expect(origin.count("/alice") == 2)
            case .strip:
                #expect(second.isHit)
                #expect(second.headers["Set-Cookie"] == nil)
                #expect(origin.count("/alice") == 1)
            case .store:
                #expect(second.isHit)
                #expect(second.headers["Set-Cookie"] == "session=alice")
                #expect(origin.count("/alice") == 1)
            }
            let stats = try admin.json(try await admin.get("/stats"))
            let counts = try #require(stats["set_cookie_responses"] as? [String: Int])
            let action = ["pass": "passed", "strip": "stripped", "store": "stored"][policy.rawValue]!
            #expect(counts[action] == (policy == .pass ? 2 : 1), "\(counts)")
            #expect(counts.values.reduce(0, +) == counts[action])
            let metrics = try await admin.get("/metrics")
            #expect(metrics.text.contains("outpost_set_cookie_responses_total{action=\"\(action)\"}"))
        }
    }
}
