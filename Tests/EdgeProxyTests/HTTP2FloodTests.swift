import Foundation
import NIOCore
import OutpostTestSupport
import Testing

/// The known HTTP/2 floods, replayed frame by frame against `outpost serve` (a process of its
/// own, so that its memory can be read): rapid reset, CONTINUATION, PING and SETTINGS floods
/// end the connection at the `[http2]` limits; a zero-window stall is reset after
/// `http2.stall_timeout`. Through all of it the node answers other clients, and its memory
/// stays bounded.
@Suite("EdgeProxy: HTTP/2 floods", .serialized)
struct HTTP2FloodTests {
    typealias Frame = RawHTTP2.Frame

    /// An Outpost process with a TLS listener, low flood limits and a short stall timeout.
    static func withNode(_ body: (OutpostProcess, Int) async throws -> Void) async throws {
        let origin = try await TestOrigin.start { request in
            if request.path == "/medium" {
                return OriginResponse(
                    headers: [("Cache-Control", "max-age=600"), ("Content-Type", "application/octet-stream")],
                    bytes: Array(repeating: 0x62, count: 200 * 1024))
            }
            if request.path == "/big" {
                return OriginResponse(
                    headers: [("Cache-Control", "max-age=600"), ("Content-Type", "application/octet-stream")],
                    bytes: Array(repeating: 0x61, count: 512 * 1024))
            }
            return OriginResponse(headers: [("Cache-Control", "max-age=600")], body: "body of \(request.path)")
        }
        let files = try TLSListenerTests.CertificateFilesOnDisk()
        let site = try files.write("a", EdgeCertificates.siteA)
        let config = files.directory + "/outpost.toml"
        try writeNodeConfig(
            config, origin: origin.url, store: files.directory + "/store", server: ["tls_listen = \"127.0.0.1:0\""],
            tables: certificateTable(site)
                + "[http2]\nmax_resets = 100\nmax_control_frames = 100\nmax_continuation_frames = 5\nstall_timeout = 1.5\n"
        )
        let node = try await OutpostProcess.start(arguments: ["serve", "--config", config])
        do {
            try await body(node, try #require(node.tlsPort))
        } catch {
            await node.stop()
            await origin.stop()
            throw error
        }
        await node.stop()
        await origin.stop()
    }

    /// A new client is answered (the node is responsive).
    static func answers(_ port: Int) async throws -> Bool {
        let client = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
        let response = try await client.get("/ok")
        await client.close()
        return response.status == 200 && response.text == "body of /ok"
    }

    /// Sends `frames` (in writes of about 64 KiB) and waits for the server to end the
    /// connection; the GOAWAY error code it sent (RFC 9113 §7), or nil if it did not end it
    /// within the deadline. Writes failing because the server closed first are expected.
    static func floodEnd(_ port: Int, _ frames: [ByteBuffer]) async throws -> UInt32? {
        let client = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
        var batch = ByteBuffer()
        do {
            for frame in frames {
                batch.writeImmutableBuffer(frame)
                if batch.readableBytes >= 64 * 1024 {
                    try await client.send(batch)
                    batch.clear()
                }
            }
            if batch.readableBytes > 0 { try await client.send(batch) }
        } catch {}
        let closed = try await client.closedByServer(within: .seconds(10))
        await client.close()
        return closed ? client.goAway?.goAwayCode ?? 0xFFFF : nil
    }

    /// ENHANCE_YOUR_CALM, the GOAWAY code of a flood limit.
    static let enhanceYourCalm: UInt32 = 0xB

    @Test(
        "rapid reset, CONTINUATION, PING and SETTINGS floods end their connection; others are answered; memory stays bounded"
    )
    func floods() async throws {
        try await Self.withNode { node, port in
            #expect(try await Self.answers(port))
            let before = try #require(node.residentBytes)
            let encoder = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
            let block = try encoder.headerBlock(path: "/reset")
            await encoder.close()
            for round in 0..<3 {
                // Rapid reset (CVE-2023-44487): open a stream, cancel it, again and again.
                var resets: [ByteBuffer] = []
                var cancel = ByteBuffer()
                cancel.writeInteger(UInt32(0x8))
                for index in 0..<2000 {
                    let stream = UInt32(1 + 2 * index)
                    resets.append(RawHTTP2.frame(Frame.headers, Frame.endHeaders | Frame.endStream, stream, block))
                    resets.append(RawHTTP2.frame(Frame.rstStream, 0, stream, cancel))
                }
                #expect(try await Self.floodEnd(port, resets) == Self.enhanceYourCalm, "rapid reset, round \(round)")

                // CONTINUATION flood: a header block that never ends.
                var continuation = [RawHTTP2.frame(Frame.headers, Frame.endStream, 1, block)]
                for _ in 0..<5000 {
                    continuation.append(
                        RawHTTP2.frame(Frame.continuation, 0, 1, ByteBuffer(bytes: [0x40, 0x01, 0x78])))
                }
                #expect(
                    try await Self.floodEnd(port, continuation) == Self.enhanceYourCalm, "CONTINUATION, round \(round)")

                // PING flood.
                let ping = RawHTTP2.frame(Frame.ping, 0, 0, ByteBuffer(bytes: Array(repeating: 7, count: 8)))
                #expect(
                    try await Self.floodEnd(port, Array(repeating: ping, count: 20_000)) == Self.enhanceYourCalm,
                    "PING, round \(round)")

                // SETTINGS flood (each one must be acknowledged).
                var setting = ByteBuffer()
                setting.writeInteger(UInt16(0x4))
                setting.writeInteger(UInt32(65535))
                let settings = RawHTTP2.frame(Frame.settings, 0, 0, setting)
                #expect(
                    try await Self.floodEnd(port, Array(repeating: settings, count: 20_000)) == Self.enhanceYourCalm,
                    "SETTINGS, round \(round)")
                #expect(try await Self.answers(port), "answering after round \(round)")
            }
            let after = try #require(node.residentBytes)
            // Three rounds of four floods, 100 000 frames and more: the node's memory may settle
            // higher (allocator arenas, the hit path's caches) but not by what the floods sent.
            #expect(after - before < 64 << 20, "resident \(before >> 20) MiB before, \(after >> 20) MiB after")
        }
    }

    @Test("a zero-window stall: the stream is reset after http2.stall_timeout, and the connection serves on")
    func zeroWindowStall() async throws {
        try await Self.withNode { node, port in
            // The misses first (so the stall is on the hit path too), with windows opened as
            // usual. A small hit is answered on the connection (HTTP2ConnectionHits), a large one
            // streams from the store on a stream channel (StallGuard): both are reset.
            // Windows larger than the body, so that the warm-up never waits on this client being
            // scheduled (on a loaded machine a wait past the stall timeout is a real stall).
            let warm = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext(), settings: [(0x4, 1 << 20)])
            try await warm.windowUpdate(stream: 0, by: 1 << 20)
            #expect(try await warm.get("/big").body.count == 512 * 1024)
            #expect(try await warm.get("/small").text == "body of /small")
            await warm.close()
            for path in ["/big", "/small", "/big?miss"] {
                // SETTINGS_INITIAL_WINDOW_SIZE = 0: no DATA may come until the client opens it.
                let stalled = try await RawHTTP2(
                    port: port, tls: RawHTTP2.clientContext(), settings: [(0x4, 0)])
                let stream = stalled.openStream()
                try await stalled.send(
                    RawHTTP2.frame(
                        Frame.headers, Frame.endHeaders | Frame.endStream, stream, try stalled.headerBlock(path: path)))
                var reset = false
                let started = ContinuousClock.now
                while !reset && ContinuousClock.now - started < .seconds(10) {
                    let frame = try await stalled.nextFrame(on: stream)
                    #expect(frame.type != Frame.data, "DATA through a shut window")
                    reset = frame.type == Frame.rstStream
                }
                #expect(reset, "\(path): not reset")
                #expect(ContinuousClock.now - started >= .milliseconds(1400), "reset before the stall timeout")
                // The connection itself is still served, once the client opens its windows.
                var open = ByteBuffer()
                open.writeInteger(UInt16(0x4))
                open.writeInteger(UInt32(65535))
                try await stalled.send(RawHTTP2.frame(Frame.settings, 0, 0, open))
                try await stalled.windowUpdate(stream: 0, by: 1 << 20)
                let next = try await stalled.get("/ok")
                #expect(next.status == 200)
                await stalled.close()
            }
            #expect(try await Self.answers(port))
            #expect(node.residentBytes != nil)
        }
    }

    @Test("frames that come after a hit answered on the connection (WINDOW_UPDATE, RST_STREAM) leave the connection up")
    func lateFramesAfterHit() async throws {
        try await Self.withNode { _, port in
            let client = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
            #expect(try await client.get("/late").text == "body of /late")
            let hit = try await client.get("/late")
            #expect(hit.field("cache-status")?.contains("hit") == true)
            // The stream just answered (RawHTTP2 numbers them 1, 3, 5, ...): the client is still
            // granting it window and now cancels it, as a browser may.
            let answered: UInt32 = 3
            try await client.windowUpdate(stream: answered, by: 4096)
            var cancel = ByteBuffer()
            cancel.writeInteger(UInt32(0x8))
            try await client.send(RawHTTP2.frame(Frame.rstStream, 0, answered, cancel))
            let next = try await client.get("/late")
            #expect(next.status == 200 && next.text == "body of /late")
            #expect(client.goAway == nil)
            await client.close()
        }
    }

    @Test("a malformed request header block resets its stream with PROTOCOL_ERROR; the connection serves on")
    func malformedHeaderBlocks() async throws {
        let base = [(":method", "GET"), (":scheme", "https"), (":authority", "a.test"), (":path", "/m")]
        let malformed: [(String, [(String, String)])] = [
            ("upper-case name", base + [("X-Upper", "1")]),
            ("connection-specific field", base + [("connection", "close")]),
            ("TE other than trailers", base + [("te", "gzip")]),
            ("missing :path", Array(base.prefix(3))),
            ("pseudo-header after a field", [("accept", "*/*")] + base),
            ("repeated :path", base + [(":path", "/n")]),
            ("unknown pseudo-header", base + [(":protocol", "websocket")]),
            ("empty :path", Array(base.prefix(3)) + [(":path", "")]),
            ("space in a field name", base + [("x y", "1")]),
        ]
        try await Self.withNode { _, port in
            let client = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
            #expect(try await client.get("/m").status == 200)  // stored: a malformed hit is refused too
            for (name, fields) in malformed {
                let stream = client.openStream()
                try await client.send(
                    RawHTTP2.frame(
                        Frame.headers, Frame.endHeaders | Frame.endStream, stream, try client.exactHeaderBlock(fields)))
                let frame = try await client.nextFrame(on: stream)
                var payload = frame.payload
                #expect(
                    frame.type == Frame.rstStream && payload.readInteger(as: UInt32.self) == 0x1,
                    "\(name): \(frame)")
            }
            let next = try await client.get("/m")
            #expect(next.status == 200 && next.text == "body of /m")
            #expect(client.goAway == nil)
            await client.close()
        }
    }

    @Test("a slow client that keeps opening its window is not reset, however long the response takes")
    func slowButMoving() async throws {
        try await Self.withNode { _, port in
            let warm = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext())
            // Stored as one chunk: its hits are answered on the connection.
            #expect(try await warm.get("/medium").body.count == 200 * 1024)
            await warm.close()
            // Windows of 48 KiB, opened by 48 KiB a second: about four seconds for 200 KiB,
            // more than twice the stall timeout (1.5 s), with progress every second.
            let slow = try await RawHTTP2(port: port, tls: RawHTTP2.clientContext(), settings: [(0x4, 48 * 1024)])
            let stream = slow.openStream()
            try await slow.send(
                RawHTTP2.frame(
                    Frame.headers, Frame.endHeaders | Frame.endStream, stream, try slow.headerBlock(path: "/medium")))
            let started = ContinuousClock.now
            var received = 0
            var granted = 48 * 1024
            var ended = false
            while !ended && ContinuousClock.now - started < .seconds(20) {
                let frame = try await slow.nextFrame(on: stream)
                #expect(frame.type != Frame.rstStream, "reset after \(received) bytes")
                if frame.type == Frame.rstStream { break }
                if frame.type == Frame.data { received += frame.payload.readableBytes }
                ended = frame.flags & Frame.endStream != 0
                if !ended && received >= granted {
                    // The window is used up: open it a second later.
                    try await Task.sleep(for: .seconds(1))
                    try await slow.windowUpdate(stream: stream, by: 48 * 1024)
                    try await slow.windowUpdate(stream: 0, by: 48 * 1024)
                    granted += 48 * 1024
                }
            }
            #expect(ended && received == 200 * 1024)
            #expect(ContinuousClock.now - started > .milliseconds(1500), "not slower than the stall timeout")
            await slow.close()
        }
    }
}
