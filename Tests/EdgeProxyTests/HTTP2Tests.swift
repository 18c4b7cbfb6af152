import Foundation
import HTTPCaching
import NIOCore
import NIOSSL
import OutpostTestSupport
import Testing

@testable import EdgeProxy
@testable import OutpostConfig

/// HTTP/2 to clients on the TLS listener (docs/tls.md): every stream goes through the same
/// hit path and transaction as an HTTP/1.1 request, with the same Cache-Status, Age, Vary,
/// Range and codings.
@Suite("EdgeProxy: HTTP/2 to clients")
struct HTTP2Tests {
    static let page = htmlPage(100_000)

    /// Pages (compressible, Vary: Accept-Encoding, an ETag), and a body that grows per path.
    static func origin() -> TestOrigin.Handler {
        { request in
            if request.path.hasPrefix("/page") {
                return OriginResponse(
                    headers: [
                        ("Cache-Control", "max-age=600"), ("Content-Type", "text/html; charset=utf-8"),
                        ("ETag", "\"page1\""), ("Vary", "Accept-Encoding"),
                    ], bytes: page, pieces: 4)
            }
            if request.path == "/upload" {
                // What arrived, and a checksum of it, for the upload tests.
                let sum = request.body.readableBytesView.reduce(UInt32(0)) { $0 &* 31 &+ UInt32($1) }
                return OriginResponse(
                    headers: [("Content-Type", "text/plain")], body: "\(request.body.readableBytes) bytes, sum \(sum)")
            }
            return OriginResponse(
                headers: [("Cache-Control", "max-age=600"), ("Content-Type", "text/plain")],
                body: "body of \(request.path)")
        }
    }

    static func withH2Outpost(
        configure: @escaping (inout OutpostConfiguration) -> Void = { _ in },
        _ body: (TestOrigin, TestOutpost, Int) async throws -> Void
    ) async throws {
        let files = try TLSListenerTests.CertificateFilesOnDisk()
        let siteA = try files.write("a", EdgeCertificates.siteA)
        try await withOutpost(
            origin: origin(),
            configure: {
                $0.server.tlsListen = SocketAddressSpec(host: "127.0.0.1", port: 0)
                $0.server.certificates = [siteA]
                configure(&$0)
            }
        ) { origin, outpost, _ in
            try await body(origin, outpost, try #require(outpost.server.tlsAddress?.port))
        }
    }

    /// Waits until the store holds `path` (a commit may land after the answer).
    static func stored(_ outpost: TestOutpost, _ path: String, _ headers: [(String, String)] = []) async throws -> Bool
    {
        try await eventually {
            if case .found = try outpost.server.store.lookup(
                "http://a.test\(path)", requestHeaders: HeaderFields(headers))
            {
                return true
            }
            return false
        }
    }

    @Test("ALPN: h2 when the client offers it, http/1.1 otherwise, and http/1.1 only with http2.enabled = false")
    func alpn() async throws {
        try await Self.withH2Outpost { _, _, port in
            let both = try await KeepAliveConnection(
                port: port, tls: TLSListenerTests.clientContext(protocols: ["h2", "http/1.1"]), serverName: "a.test")
            #expect(both.negotiatedProtocol == "h2")
            await both.close()
            let one = try await KeepAliveConnection(
                port: port, tls: TLSListenerTests.clientContext(protocols: ["http/1.1"]), serverName: "a.test")
            #expect(one.negotiatedProtocol == "http/1.1")
            #expect(try await one.get("/x", host: "a.test").body == "body of /x")
            await one.close()
        }
        try await Self.withH2Outpost(configure: { $0.http2.enabled = false }) { _, _, port in
            let offered = try await KeepAliveConnection(
                port: port, tls: TLSListenerTests.clientContext(protocols: ["h2", "http/1.1"]), serverName: "a.test")
            #expect(offered.negotiatedProtocol == "http/1.1")
            await offered.close()
        }
    }

    @Test(
        "a miss then a hit with Age; Vary and br; a Range as 206; HEAD; a 304 for If-None-Match; all on one connection")
    func cacheSemantics() async throws {
        try await Self.withH2Outpost { origin, outpost, port in
            let client = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
            let miss = try await client.get("/page")
            #expect(miss.status == 200 && miss.body == Self.page, "\(miss.status) \(miss.body.count)")
            #expect(miss.field("cache-status")?.hasPrefix("outpost; fwd=uri-miss") == true)
            #expect(miss.field("connection") == nil && miss.field("transfer-encoding") == nil)
            #expect(try await Self.stored(outpost, "/page"))
            let hit = try await client.get("/page")
            #expect(hit.status == 200 && hit.body == Self.page)
            #expect(hit.field("cache-status")?.hasPrefix("outpost; hit") == true, "\(hit.fields)")
            #expect(hit.field("age") != nil && hit.field("vary") == "Accept-Encoding")
            #expect(hit.field("content-length") == "\(Self.page.count)")

            // br: coded in the background after a request wants it, then served as a hit.
            _ = try await client.get("/page", [("Accept-Encoding", "br")])
            #expect(
                try await eventually {
                    try await client.get("/page", [("Accept-Encoding", "br")]).field("content-encoding") == "br"
                })
            let coded = try await client.get("/page", [("Accept-Encoding", "br, gzip")])
            #expect(coded.field("content-encoding") == "br" && coded.field("cache-status")?.contains("hit") == true)
            #expect(try systemDecode("br", coded.body) == Self.page)

            let range = try await client.get("/page", [("Range", "bytes=100-199")])
            #expect(range.status == 206 && range.body == Array(Self.page[100...199]))
            #expect(range.field("content-range") == "bytes 100-199/\(Self.page.count)")

            let head = try await client.get("/page", method: "HEAD")
            #expect(head.status == 200 && head.body.isEmpty && head.field("content-length") == "\(Self.page.count)")

            let notModified = try await client.get("/page", [("If-None-Match", "\"page1\"")])
            #expect(notModified.status == 304 && notModified.body.isEmpty)
            #expect(origin.count("/page") == 1)
            await client.close()
        }
    }

    @Test("streams at once on one connection, misses and hits, each answered whole and in full")
    func concurrentStreams() async throws {
        try await Self.withH2Outpost { origin, _, port in
            let client = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
            var streams: [(UInt32, String)] = []
            for index in 0..<24 {
                let path = "/s/\(index % 12)"
                let stream = client.openStream()
                try await client.send(
                    RawHTTP2.frame(
                        RawHTTP2.Frame.headers, RawHTTP2.Frame.endHeaders | RawHTTP2.Frame.endStream, stream,
                        try client.headerBlock(path: path)))
                streams.append((stream, path))
            }
            for (stream, path) in streams {
                let response = try await client.response(on: stream)
                #expect(response.status == 200 && response.text == "body of \(path)", "\(path)")
            }
            // Twelve paths, each fetched once however many streams asked at once.
            for index in 0..<12 { #expect(origin.count("/s/\(index)") == 1) }
            await client.close()
        }
    }

    @Test("curl --http2 and nghttp, real clients, against the listener with the test CA")
    func realClients() async throws {
        try await Self.withH2Outpost { _, _, port in
            let files = try TLSListenerTests.CertificateFilesOnDisk()
            let ca = files.directory + "/ca.pem"
            try EdgeCertificates.caPEM.write(toFile: ca, atomically: true, encoding: .utf8)
            let url = "https://a.test:\(port)/curl"
            let resolve = "a.test:\(port):127.0.0.1"
            let first = try await ChildProcess.runDetached(
                "/usr/bin/curl", ["-sS", "--http2", "--cacert", ca, "--resolve", resolve, "-D", "-", url])
            let head = String(decoding: first.stdout, as: UTF8.self)
            #expect(head.hasPrefix("HTTP/2 200"), "\(head) \(String(decoding: first.stderr, as: UTF8.self))")
            #expect(head.contains("body of /curl"))
            let second = try await ChildProcess.runDetached(
                "/usr/bin/curl", ["-sS", "--http2", "--cacert", ca, "--resolve", resolve, "-D", "-", url])
            #expect(String(decoding: second.stdout, as: UTF8.self).contains("cache-status: outpost; hit"))
            // nghttp names the server by its address (no SNI name): the default certificate.
            let nghttp = try await ChildProcess.runDetached(
                "/usr/bin/nghttp", ["-v", "--no-verify-peer", "https://127.0.0.1:\(port)/curl"])
            let trace = String(decoding: nghttp.stdout, as: UTF8.self)
            #expect(nghttp.status == 0, "\(trace)")
            #expect(trace.contains(":status: 200") && trace.contains("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100"))
        }
    }

    @Test("an idle HTTP/2 connection closes after server.idle_timeout; a shutdown does not wait for an idle one")
    func idleAndShutdown() async throws {
        try await Self.withH2Outpost(configure: { $0.server.idleTimeout = 3 }) { _, _, port in
            let client = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
            #expect(try await client.get("/idle").status == 200)
            #expect(try await client.closedByServer(within: .seconds(20)))
            await client.close()
        }
        let files = try TLSListenerTests.CertificateFilesOnDisk()
        let siteA = try files.write("a", EdgeCertificates.siteA)
        let origin = try await TestOrigin.start(Self.origin())
        let outpost = try await TestOutpost.start(origin: origin.url) {
            $0.server.tlsListen = SocketAddressSpec(host: "127.0.0.1", port: 0)
            $0.server.certificates = [siteA]
            $0.server.shutdownGrace = 60
        }
        let client = try await RawHTTP2(
            port: try #require(outpost.server.tlsAddress?.port), tls: RawHTTP2.clientContext())
        #expect(try await client.get("/before-shutdown").status == 200)
        let started = ContinuousClock.now
        await outpost.stop()
        #expect(ContinuousClock.now - started < .seconds(30), "the shutdown waited for an idle connection")
        #expect(try await client.closedByServer(within: .seconds(5)))
        await client.close()
        outpost.removeStore()
        await origin.stop()
    }

    @Test(
        "request bodies many times the stream and connection windows arrive whole (curl --http2 uploads)",
        arguments: [1 << 20, 65535])
    func largeUploads(connectionWindow: Int) async throws {
        try await Self.withH2Outpost(configure: { $0.http2.connectionWindowSize = connectionWindow }) { _, _, port in
            let files = try TLSListenerTests.CertificateFilesOnDisk()
            let ca = files.directory + "/ca.pem"
            try EdgeCertificates.caPEM.write(toFile: ca, atomically: true, encoding: .utf8)
            let upload = files.directory + "/upload.bin"
            let bytes = pseudoRandomBytes(3 << 20, seed: 7)
            try Data(bytes).write(to: URL(fileURLWithPath: upload))
            let sum = bytes.reduce(UInt32(0)) { $0 &* 31 &+ UInt32($1) }
            let url = "https://a.test:\(port)/upload"
            // Two uploads on one connection, one after the other (curl reuses it), then a GET.
            let result = try await ChildProcess.runDetached(
                "/usr/bin/curl",
                [
                    "-sS", "--http2", "--cacert", ca, "--resolve", "a.test:\(port):127.0.0.1",
                    "--data-binary", "@" + upload, url, "--next", "--http2", "--cacert", ca, "--resolve",
                    "a.test:\(port):127.0.0.1", "--data-binary", "@" + upload, url, "--next", "--http2", "--cacert",
                    ca, "--resolve", "a.test:\(port):127.0.0.1", "https://a.test:\(port)/after",
                ])
            let output = String(decoding: result.stdout, as: UTF8.self)
            let expected = "\(3 << 20) bytes, sum \(sum)"
            #expect(result.status == 0, "\(String(decoding: result.stderr, as: UTF8.self))")
            #expect(output == expected + expected + "body of /after", "\(output)")
        }
    }

    @Test("a connection in use outlives server.idle_timeout, however long; it closes that long after its last stream")
    func idleMeasuredFromLastStream() async throws {
        try await Self.withH2Outpost(configure: { $0.server.idleTimeout = 4 }) { _, _, port in
            let client = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
            // A request every 100 ms for ten seconds, more than twice the idle timeout: the idle
            // timer set at the start fires while the connection is in use. The gaps between
            // streams stay far below the timeout even on a loaded machine.
            let started = ContinuousClock.now
            var requests = 0
            // When the last request was sent: its stream cannot have ended before, so the idle
            // close cannot come before this plus the timeout, however late this task runs.
            var last = started
            while ContinuousClock.now - started < .seconds(10) {
                last = ContinuousClock.now
                #expect(try await client.get("/busy/\(requests % 3)").status == 200)
                requests += 1
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await client.closedByServer(within: .seconds(20)))
            #expect(ContinuousClock.now - last >= .seconds(4), "closed before the idle timeout after the last stream")
            await client.close()
        }
    }

    @Test("a request body that stops arriving resets its stream after server.request_body_timeout; others go on")
    func stalledBody() async throws {
        try await Self.withH2Outpost(configure: { $0.server.requestBodyTimeout = 1 }) { _, _, port in
            let client = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
            let stream = client.openStream()
            try await client.send(
                RawHTTP2.frame(
                    RawHTTP2.Frame.headers, RawHTTP2.Frame.endHeaders, stream,
                    try client.headerBlock(method: "POST", path: "/upload", [("Content-Length", "100")])))
            try await client.send(RawHTTP2.frame(RawHTTP2.Frame.data, 0, stream, ByteBuffer(string: "ten bytes!")))
            let started = ContinuousClock.now
            var reset = false
            while !reset && ContinuousClock.now - started < .seconds(15) {
                reset = try await client.nextFrame(on: stream).type == RawHTTP2.Frame.rstStream
            }
            #expect(reset, "the stalled upload was not reset")
            #expect(ContinuousClock.now - started >= .milliseconds(900), "reset before the body timeout")
            #expect(try await client.get("/after-stall").status == 200)
            await client.close()
        }
    }
}
