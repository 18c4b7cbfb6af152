import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing

@testable import EdgeProxy
@testable import OutpostConfig

/// `https` origins: TLS to the origin through Outpost's own client, certificates verified
/// against the system's roots plus `upstream.tls_ca_file`.
@Suite("EdgeProxy: https origins")
struct OriginTLSTests {
    /// Runs `body` against an `https` test origin whose CA Outpost trusts.
    static func withTLSOrigin(
        _ handler: @escaping TestOrigin.Handler, trusted: Bool = true,
        _ body: (TestOrigin, TestOutpost, TestClient) async throws -> Void
    ) async throws {
        let caFile = try TestCertificates.caFile()
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        try await withOutpost(
            origin: handler, originTLS: try TestCertificates.serverContext(),
            configure: {
                if trusted { $0.upstream.tlsCAFile = caFile }
                $0.upstream.responseTimeout = 30
            }, body)
    }

    @Test("a miss is fetched over TLS and stored; the hit does not reach the origin")
    func missThenHit() async throws {
        try await Self.withTLSOrigin(staticOrigin([("Cache-Control", "max-age=60")])) { origin, outpost, client in
            #expect(origin.url.hasPrefix("https://"))
            let miss = try await client.get(outpost.base + "/tls")
            #expect(miss.status == 200 && miss.text == "body of /tls")
            #expect(miss.cacheStatus.contains("fwd=uri-miss"), "\(miss.cacheStatus)")
            let hit = try await client.get(outpost.base + "/tls")
            #expect(hit.isHit && hit.text == "body of /tls")
            #expect(origin.count("/tls") == 1)
        }
    }

    @Test("a request body goes to an https origin whole, on a connection kept alive for the next")
    func requestBody() async throws {
        try await Self.withTLSOrigin({ request in
            OriginResponse(status: 201, headers: [], body: "got \(request.body.readableBytes)")
        }) { origin, outpost, client in
            let upload = String(repeating: "0123456789abcdef", count: 16_384)  // 256 KiB
            let rounds = 6
            for _ in 0..<rounds {
                let response = try await client.request(outpost.base + "/upload", method: .POST, body: upload)
                #expect(response.status == 201 && response.text == "got \(upload.utf8.count)")
            }
            #expect(
                origin.requests(to: "/upload").map { String(buffer: $0.body) }
                    == Array(repeating: upload, count: rounds), "bodies differ")
            #expect(
                origin.requests(to: "/upload").allSatisfy { $0.headers["Content-Length"] == "\(upload.utf8.count)" })
            // Each event loop keeps its own connections: at most one each, reused request after request.
            let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator()).count
            #expect(origin.connectionCount <= min(loops, rounds - 1), "\(origin.connectionCount) connections")
        }
    }

    @Test("103 Early Hints from an https origin reaches the client before the final response")
    func earlyHints() async throws {
        let finalHead = Gate()
        try await Self.withTLSOrigin({ _ in
            var response = OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "final")
            response.interim = [(103, InterimResponseTests.hints)]
            response.headGate = finalHead
            return response
        }) { _, outpost, _ in
            try await InterimResponseTests.withRawClient(port: outpost.port) { send, received in
                try await send("GET /hinted HTTP/1.1\r\nHost: 127.0.0.1:\(outpost.port)\r\n\r\n")
                #expect(try await eventually { received.withLockedValue { $0.contains("\r\n\r\n") } })
                let early = received.withLockedValue { $0 }
                #expect(early.hasPrefix("HTTP/1.1 103 Early Hints\r\n") && !early.contains("HTTP/1.1 200"), "\(early)")
                finalHead.open()
                #expect(try await eventually { received.withLockedValue { $0.hasSuffix("final") } })
            }
        }
    }

    @Test("an origin certificate no trusted CA signed → 502 with Proxy-Status tls_certificate_error")
    func untrustedCertificate() async throws {
        try await Self.withTLSOrigin(staticOrigin([("Cache-Control", "max-age=60")]), trusted: false) {
            origin, outpost, client in
            let response = try await client.get(outpost.base + "/untrusted")
            #expect(response.status == 502)
            #expect(response.headers["Proxy-Status"]?.contains("error=tls_certificate_error") == true)
            #expect(origin.requests.isEmpty)
            // Nothing was stored: the next request tries again.
            _ = try await client.get(outpost.base + "/untrusted")
            #expect(origin.requests.isEmpty)
        }
    }

    @Test("upstream.tls_ca_file that holds no certificate stops the start with a message naming the key")
    func unreadableCAFile() async throws {
        let path = NSTemporaryDirectory() + "outpost-test-not-a-ca-" + UUID().uuidString
        try "not a certificate".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        for file in [path, path + ".missing"] {
            let store = NSTemporaryDirectory() + "outpost-edge-test-" + UUID().uuidString
            defer { try? FileManager.default.removeItem(atPath: store) }
            do {
                let outpost = try await TestOutpost.start(origin: "https://127.0.0.1:9", storePath: store) {
                    $0.upstream.tlsCAFile = file
                }
                await outpost.stop()
                outpost.removeStore()
                Issue.record("started with upstream.tls_ca_file = \(file)")
            } catch let error as ConfigurationError {
                #expect(error.description.contains("upstream.tls_ca_file"), "\(error)")
            }
        }
        let parsed = try ConfigurationLoader.parse(
            "[upstream]\ndefault = \"https://o\"\ntls_ca_file = \"/etc/ca.pem\"\n")
        #expect(parsed.upstream.tlsCAFile == "/etc/ca.pem")
    }

    @Test("TLS is set up only when an origin is https or a CA file is named")
    func needsTLS() throws {
        var upstream = OutpostConfiguration.Upstream()
        upstream.defaultOrigin = OriginURL(parsing: "http://o:8080")
        #expect(!UpstreamPool.needsTLS(upstream))
        upstream.hosts["static.example"] = OriginURL(parsing: "https://s")
        #expect(UpstreamPool.needsTLS(upstream))
        upstream.hosts = [:]
        upstream.tlsCAFile = "/etc/ca.pem"
        #expect(UpstreamPool.needsTLS(upstream))
        upstream.tlsCAFile = nil
        upstream.defaultOrigin = OriginURL(parsing: "https://o")
        #expect(UpstreamPool.needsTLS(upstream))
    }
}
