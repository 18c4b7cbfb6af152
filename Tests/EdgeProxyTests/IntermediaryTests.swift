import Foundation
import HTTPCaching
import NIOHTTP1
import Testing

/// RFC 9110 §7, RFC 9112 §6.3 and RFC 9209: Outpost as a well-behaved intermediary.
@Suite("EdgeProxy: intermediary duties")
struct IntermediaryTests {
    static func status(of response: String) -> Int? {
        guard response.hasPrefix("HTTP/1.1 ") else { return nil }
        return Int(response.dropFirst(9).prefix(3))
    }

    @Test(
        "RFC 9112 §6.3 / §5.2: smuggling vectors and malformed heads are rejected with 400",
        arguments: [
            (
                "Content-Length + Transfer-Encoding",
                "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            (
                "duplicate differing Content-Length",
                "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
            ),
            ("unknown transfer coding", "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
            ("obs-fold", "GET /x HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n"),
            ("bare CR in a field", "GET /x HTTP/1.1\r\nHost: h\r\nX-Bad: a\rb\r\n\r\n"),
            ("missing Host", "GET /x HTTP/1.1\r\n\r\n"),
            ("two Host fields", "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            ("space before colon", "GET /x HTTP/1.1\r\nHost: h\r\nX-Bad : a\r\n\r\n"),
        ])
    func rejectsSmuggling(name: String, raw: String) async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60")])) { origin, outpost, _ in
            let response = try await rawExchange(port: outpost.port, raw)
            #expect(Self.status(of: response) == 400, "\(name): \(response.prefix(200))")
            #expect(origin.requests.isEmpty, "\(name) reached the origin")
        }
    }

    @Test("RFC 6585 §5: an oversized header section is 431; RFC 9112 §3: an oversized URI is 414")
    func limits() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60")])) { origin, outpost, _ in
            let big = String(repeating: "a", count: 100_000)
            let headers = try await rawExchange(
                port: outpost.port, "GET /x HTTP/1.1\r\nHost: h\r\nX-Big: \(big)\r\n\r\n")
            #expect(Self.status(of: headers) == 431)
            let longURI = "/" + String(repeating: "u", count: 10_000)
            let uri = try await rawExchange(port: outpost.port, "GET \(longURI) HTTP/1.1\r\nHost: h\r\n\r\n")
            #expect(Self.status(of: uri) == 414)
            #expect(origin.requests.isEmpty)
        }
    }

    @Test("RFC 9112 §9.3.2: pipelined requests are answered in order on one connection")
    func pipelining() async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60")])) { _, outpost, _ in
            let requests = ["/one", "/two", "/three"].map { "GET \($0) HTTP/1.1\r\nHost: h\r\n\r\n" }.joined()
            let response = try await rawExchange(
                port: outpost.port, requests + "GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            let order = ["body of /one", "body of /two", "body of /three", "body of /last"].map {
                response.range(of: $0)?.lowerBound
            }
            #expect(order.allSatisfy { $0 != nil })
            #expect(order.compactMap { $0 }.sorted() == order.compactMap { $0 })
        }
    }

    @Test("RFC 9110 §7.6: hop-by-hop fields are stripped both ways; Via, X-Forwarded-For and -Proto go upstream")
    func hopByHop() async throws {
        try await withOutpost(origin: { _ in
            OriginResponse(
                headers: [
                    ("Cache-Control", "max-age=60"), ("Connection", "X-Secret"), ("X-Secret", "1"),
                    ("Keep-Alive", "timeout=5"), ("X-Kept", "yes"),
                ],
                body: "ok")
        }) { origin, outpost, client in
            let response = try await client.get(
                outpost.base + "/hop",
                [("Connection", "X-Client-Private"), ("X-Client-Private", "1"), ("X-Forwarded-For", "10.1.1.1")])
            #expect(response.headers["X-Secret"] == nil)
            #expect(response.headers["Keep-Alive"] == nil)
            #expect(response.headers["X-Kept"] == "yes")
            let seen = try #require(origin.requests.first)
            #expect(seen.headers["X-Client-Private"] == nil)
            #expect(seen.headers["Via"]?.contains("outpost") == true)
            #expect(seen.headers["X-Forwarded-For"] == "10.1.1.1, 127.0.0.1")
            #expect(seen.headers["X-Forwarded-Proto"] == "http")
            let hit = try await client.get(outpost.base + "/hop")
            #expect(hit.isHit)
            #expect(hit.headers["X-Secret"] == nil)
        }
    }

    @Test("RFC 9110 §6.6.1: a response without Date gets one, and the stored copy keeps it")
    func dateAdded() async throws {
        try await withOutpost(origin: { _ in
            var response = OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "x")
            response.addDate = false
            return response
        }) { origin, outpost, client in
            let started = ContinuousClock.now
            let first = try await client.get(outpost.base + "/d")
            let date = try #require(first.headers["Date"])
            #expect(HTTPDate.parse(date) != nil)
            outpost.clock.advance(by: 3)
            let hit = try await client.get(outpost.base + "/d")
            #expect(hit.isHit)
            #expect(hit.headers["Date"] == date)
            // The test clock moved 3 s; real time moved too, and the age counts the first
            // fetch's own duration (RFC 9111 §4.2.3 response_delay): more on a loaded machine.
            let elapsed = Int((ContinuousClock.now - started).components.seconds)
            let age = try #require(hit.headers["Age"].flatMap { Int($0) })
            #expect((3...4 + elapsed).contains(age), "Age \(age) after 3 s of test clock and \(elapsed) s of real time")
            #expect(origin.count("/d") == 1)
        }
    }

    @Test("RFC 9209: origin refused → 502 with Proxy-Status, while stored fresh objects are still hits")
    func originDown() async throws {
        let origin = try await TestOrigin.start(staticOrigin([("Cache-Control", "max-age=600")]))
        let outpost = try await TestOutpost.start(origin: origin.url)
        let client = TestClient()
        _ = try await client.get(outpost.base + "/kept")
        await origin.stop()
        let down = try await client.get(outpost.base + "/other")
        #expect(down.status == 502)
        #expect(down.headers["Proxy-Status"]?.contains("error=connection_refused") == true)
        #expect(down.cacheStatus.contains("fwd=uri-miss"))
        let kept = try await client.get(outpost.base + "/kept")
        #expect(kept.status == 200)
        #expect(kept.isHit)
        await client.shutdown()
        await outpost.stop()
        outpost.removeStore()
    }

    @Test("RFC 9209: an origin that does not answer in time → 504 with Proxy-Status")
    func originTimeout() async throws {
        let gate = Gate()
        try await withOutpost(
            origin: { _ in
                await gate.wait()
                return OriginResponse(body: "late")
            },
            configure: { $0.upstream.responseTimeout = 0.5 }
        ) { _, outpost, client in
            let response = try await client.get(outpost.base + "/slow")
            gate.open()
            #expect(response.status == 504)
            #expect(response.headers["Proxy-Status"]?.contains("error=http_response_timeout") == true)
        }
    }

    @Test("RFC 9209: an origin that hangs up without answering → 502")
    func originHangsUp() async throws {
        try await withOutpost(origin: { _ in OriginResponse(action: .hangUp) }) { _, outpost, client in
            let response = try await client.get(outpost.base + "/gone")
            #expect(response.status == 502)
            #expect(response.headers["Proxy-Status"] != nil)
        }
    }

    @Test("RFC 9111 §3.4 (completeness): a truncated body is never stored, and the client sees the cut")
    func truncatedBody() async throws {
        let payload = testBytes(300_000)
        try await withOutpost(origin: { _ in
            var response = OriginResponse(headers: [("Cache-Control", "max-age=60")], bytes: payload, pieces: 3)
            response.action = .truncate
            return response
        }) { origin, outpost, client in
            await #expect(throws: (any Error).self) { _ = try await client.get(outpost.base + "/cut") }
            await #expect(throws: (any Error).self) { _ = try await client.get(outpost.base + "/cut") }
            #expect(origin.count("/cut") == 2)
        }
    }

    @Test("an idle keep-alive connection is closed after idle_timeout; a slow header after request_header_timeout")
    func idleTimeouts() async throws {
        try await withOutpost(
            origin: staticOrigin([("Cache-Control", "max-age=60")]),
            configure: {
                $0.server.idleTimeout = 0.5
                $0.server.requestHeaderTimeout = 0.5
            }
        ) { _, outpost, _ in
            let started = ContinuousClock.now
            let idle = try await rawExchange(port: outpost.port, "", deadline: .seconds(10))
            #expect(idle.isEmpty)
            let slow = try await rawExchange(
                port: outpost.port, "GET /x HTTP/1.1\r\nHost: h\r\n", deadline: .seconds(10))
            #expect(!slow.contains("200"))
            #expect(ContinuousClock.now - started < .seconds(9))
        }
    }
}

/// RFC 9110 §9.1 / RFC 9111 §4.4: methods other than GET and HEAD go to the origin as they
/// came (never stored, never answered from storage), and a non-error answer to a method not
/// known to be safe invalidates what is stored for its target.
@Suite("EdgeProxy: extension methods")
struct ExtensionMethodTests {
    static func status(_ response: String) -> Int? { IntermediaryTests.status(of: response) }

    @Test(
        "WebDAV, SSDP, PURGE and any other method token are forwarded as sent and not stored",
        arguments: [
            "PROPFIND", "REPORT", "MKCOL", "PURGE", "M-SEARCH", "LINK", "SEARCH", "FOO", "BREW", "get", "PLAY",
            "VERSION-CONTROL", "X.Y_Z~1",
        ])
    func forwarded(method: String) async throws {
        try await withOutpost(origin: { request in
            OriginResponse(status: 207, headers: [("Cache-Control", "max-age=60")], body: "\(request.method) answered")
        }) { origin, outpost, _ in
            for _ in 0..<2 {
                let response = try await rawExchange(
                    port: outpost.port, "\(method) /dav HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                #expect(Self.status(response) == 207, "\(method): \(response.prefix(200))")
                #expect(response.contains("fwd=method"))
            }
            // NIO's parser names M-SEARCH `MSEARCH`; a 207 shows the origin parsed M-SEARCH.
            let seen = method == "M-SEARCH" ? "MSEARCH" : method
            #expect(origin.requests.map(\.method) == [seen, seen])
        }
    }

    @Test(
        "extension methods on a kept-alive connection after a miss, a hit and a body reach the origin with their body and fields"
    )
    func withBody() async throws {
        try await withOutpost(origin: { request in
            OriginResponse(
                headers: [("Cache-Control", "max-age=60")],
                body: "\(request.method) \(String(buffer: request.body)) \(request.headers["x-brew"] ?? "-")")
        }) { origin, outpost, _ in
            let host = "Host: 127.0.0.1:\(outpost.port)\r\n"
            let answer = try await rawExchange(
                port: outpost.port,
                [
                    "GET /pot HTTP/1.1\r\n\(host)\r\n",  // a miss
                    "BREW /pot HTTP/1.1\r\n\(host)X-Brew: earl grey\r\nContent-Length: 6\r\n\r\nstrong",
                    "GET /pot HTTP/1.1\r\n\(host)\r\n",  // a miss again: BREW invalidated it
                    "GET /pot HTTP/1.1\r\n\(host)\r\n",  // a hit
                    "BREW /pot HTTP/1.1\r\n\(host)\r\n",
                    "POST /pot HTTP/1.1\r\n\(host)Content-Length: 2\r\n\r\nhi",  // a read ending in a body
                    "FOO /pot HTTP/1.1\r\n\(host)Connection: close\r\n\r\n",
                ])
            #expect(answer.contains("BREW strong earl grey"), "\(answer)")
            #expect(answer.contains("POST hi -"), "\(answer)")
            #expect(answer.contains("FOO  -"), "\(answer)")
            #expect(answer.components(separatedBy: "HTTP/1.1 200").count == 8, "\(answer)")
            #expect(origin.requests(to: "/pot").map(\.method) == ["GET", "BREW", "GET", "BREW", "POST", "FOO"])
        }
    }

    @Test(
        "pipelined in one write: extension methods after requests with no body or a declared length reach the origin as sent"
    )
    func pipelinedInOneWrite() async throws {
        try await withOutpost(origin: { request in
            OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "\(request.method) \(request.path)")
        }) { origin, outpost, _ in
            let host = "Host: 127.0.0.1:\(outpost.port)\r\n"
            let answer = try await rawExchange(
                port: outpost.port,
                "GET /pot HTTP/1.1\r\n\(host)\r\n" + "BREW /pot HTTP/1.1\r\n\(host)\r\n"
                    + "GET /pot HTTP/1.1\r\n\(host)\r\n"
                    + "UNBIND /u HTTP/1.1\r\n\(host)\r\n" + "POST /pot HTTP/1.1\r\n\(host)Content-Length: 2\r\n\r\nhi"
                    + "X-Y /pot HTTP/1.1\r\n\(host)Connection: close\r\n\r\n")
            #expect(answer.components(separatedBy: "HTTP/1.1 200").count == 7, "\(answer)")
            for body in ["GET /pot", "BREW /pot", "UNBIND /u", "POST /pot", "X-Y /pot"] {
                #expect(answer.contains(body), "\(answer)")
            }
            #expect(origin.requests.map(\.method) == ["GET", "BREW", "GET", "UNBIND", "POST", "X-Y"])
        }
    }

    @Test("a non-error answer to an unsafe extension method invalidates the stored GET; an error does not")
    func invalidates() async throws {
        try await withOutpost(origin: { request in
            switch request.method {
            case "MKCOL": OriginResponse(status: 500, headers: [], body: "failed")
            case "GET": OriginResponse(headers: [("Cache-Control", "max-age=600")], body: "stored \(request.path)")
            default: OriginResponse(status: 207, headers: [], body: "multi-status")
            }
        }) { origin, outpost, client in
            _ = try await client.get(outpost.base + "/r")
            #expect(try await outpost.stored("/r"))
            let failed = try await rawExchange(
                port: outpost.port, "MKCOL /r HTTP/1.1\r\nHost: 127.0.0.1:\(outpost.port)\r\nConnection: close\r\n\r\n")
            #expect(Self.status(failed) == 500)
            #expect(try await client.get(outpost.base + "/r").isHit)
            let done = try await rawExchange(
                port: outpost.port,
                "PROPPATCH /r HTTP/1.1\r\nHost: 127.0.0.1:\(outpost.port)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            #expect(Self.status(done) == 207)
            let after = try await client.get(outpost.base + "/r")
            #expect(!after.isHit && after.text == "stored /r")
            #expect(origin.count("/r") == 4)
            // A method llhttp does not know is just as unsafe (§4.4).
            #expect(try await client.get(outpost.base + "/r").isHit)
            let brewed = try await rawExchange(
                port: outpost.port, "BREW /r HTTP/1.1\r\nHost: 127.0.0.1:\(outpost.port)\r\nConnection: close\r\n\r\n")
            #expect(Self.status(brewed) == 207)
            #expect(!(try await client.get(outpost.base + "/r").isHit))
            #expect(origin.requests(to: "/r").map(\.method) == ["GET", "MKCOL", "PROPPATCH", "GET", "BREW", "GET"])
        }
    }

    @Test("CONNECT and TRACE get 501 and never reach the origin", arguments: ["CONNECT h:443", "TRACE /t"])
    func refused(requestLine: String) async throws {
        try await withOutpost(origin: staticOrigin([("Cache-Control", "max-age=60")])) { origin, outpost, _ in
            let response = try await rawExchange(port: outpost.port, "\(requestLine) HTTP/1.1\r\nHost: h\r\n\r\n")
            #expect(Self.status(response) == 501, "\(response.prefix(200))")
            #expect(origin.requests.isEmpty)
        }
    }
}
