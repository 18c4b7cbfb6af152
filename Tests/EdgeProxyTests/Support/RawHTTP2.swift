import Foundation
import NIOCore
import NIOHPACK
import NIOPosix
import NIOSSL

/// An HTTP/2 client that writes frames byte by byte (RFC 9113 §4), over TLS with ALPN `h2`:
/// for requests whose every frame a test wants to see, and for the floods a well-behaved
/// client library would never send (rapid reset, CONTINUATION, PING and SETTINGS floods,
/// zero-window stalls).
final class RawHTTP2: @unchecked Sendable {
    struct Frame: CustomStringConvertible {
        var type: UInt8
        var flags: UInt8
        var stream: UInt32
        var payload: ByteBuffer
        /// A HEADERS frame's fields, decoded as it was read (HPACK's table follows the order
        /// frames arrive in, whichever stream they are for).
        var fields: [(String, String)] = []

        static let data: UInt8 = 0, headers: UInt8 = 1, rstStream: UInt8 = 3, settings: UInt8 = 4, ping: UInt8 = 6,
            goAway: UInt8 = 7, windowUpdate: UInt8 = 8, continuation: UInt8 = 9
        static let endStream: UInt8 = 0x1, endHeaders: UInt8 = 0x4, ack: UInt8 = 0x1

        var description: String { "frame(type \(type), flags \(flags), stream \(stream), \(payload.readableBytes) B)" }
    }

    struct Response {
        var status: Int
        var fields: [(String, String)]
        var body: [UInt8]
        func field(_ name: String) -> String? { fields.first { $0.0 == name.lowercased() }?.1 }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    struct Closed: Error {}

    private let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var pending = ByteBuffer()
    private var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
    private var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
    private var nextStream: UInt32 = 1
    /// Frames read while waiting for another stream's.
    private var held: [Frame] = []
    /// The GOAWAY the server sent, if it did.
    private(set) var goAway: Frame?

    /// Connects with TLS (ALPN `h2` only), sends the preface and `settings`, and reads the
    /// server's SETTINGS.
    init(
        port: Int, tls: NIOSSLContext, serverName: String = "a.test", settings: [(UInt16, UInt32)] = []
    )
        async throws
    {
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        try NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        inbound = channel.inbound.makeAsyncIterator()
        outbound = channel.outbound
        var preface = ByteBuffer(string: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        var payload = ByteBuffer()
        for (identifier, value) in settings {
            payload.writeInteger(identifier)
            payload.writeInteger(value)
        }
        preface.writeImmutableBuffer(Self.frame(Frame.settings, 0, 0, payload))
        try await send(preface)
        // The server's SETTINGS, then ours acknowledged.
        var seenSettings = false
        while !seenSettings {
            let frame = try await readFrame()
            if frame.type == Frame.settings && frame.flags & Frame.ack == 0 {
                seenSettings = true
                try await send(Self.frame(Frame.settings, Frame.ack, 0, ByteBuffer()))
            }
        }
    }

    static func clientContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(EdgeCertificates.caPEM.utf8)))
        configuration.applicationProtocols = ["h2"]
        return try NIOSSLContext(configuration: configuration)
    }

    static func frame(_ type: UInt8, _ flags: UInt8, _ stream: UInt32, _ payload: ByteBuffer) -> ByteBuffer {
        var buffer = ByteBuffer()
        let length = UInt32(payload.readableBytes)
        buffer.writeInteger(UInt8(length >> 16))
        buffer.writeInteger(UInt16(length & 0xFFFF))
        buffer.writeInteger(type)
        buffer.writeInteger(flags)
        buffer.writeInteger(stream & 0x7FFF_FFFF)
        buffer.writeImmutableBuffer(payload)
        return buffer
    }

    func send(_ bytes: ByteBuffer) async throws { try await outbound.write(bytes) }

    /// A new stream's id (odd, increasing).
    func openStream() -> UInt32 {
        defer { nextStream += 2 }
        return nextStream
    }

    /// A request's header block, HPACK-encoded.
    func headerBlock(
        method: String = "GET", path: String, authority: String = "a.test", _ fields: [(String, String)] = []
    )
        throws -> ByteBuffer
    {
        var headers = HPACKHeaders([
            (":method", method), (":scheme", "https"), (":authority", authority), (":path", path),
        ])
        for (name, value) in fields { headers.add(name: name.lowercased(), value: value) }
        var block = ByteBuffer()
        try encoder.encode(headers: headers, to: &block)
        return block
    }

    /// A header block with exactly these fields, in this order (for malformed requests).
    func exactHeaderBlock(_ fields: [(String, String)]) throws -> ByteBuffer {
        var block = ByteBuffer()
        try encoder.encode(headers: HPACKHeaders(fields), to: &block)
        return block
    }

    /// Sends a request without a body and reads its response whole, opening the windows as
    /// DATA arrives.
    func get(_ path: String, _ fields: [(String, String)] = [], method: String = "GET") async throws -> Response {
        let stream = openStream()
        let block = try headerBlock(method: method, path: path, fields)
        try await send(Self.frame(Frame.headers, Frame.endHeaders | Frame.endStream, stream, block))
        return try await response(on: stream)
    }

    /// Reads the response on `stream` to its end.
    func response(on stream: UInt32) async throws -> Response {
        var status = 0
        var fields: [(String, String)] = []
        var body: [UInt8] = []
        while true {
            let frame = try await nextFrame(on: stream)
            var payload = frame.payload
            switch frame.type {
            case Frame.headers:
                for (name, value) in frame.fields {
                    if name == ":status" { status = Int(value) ?? 0 } else { fields.append((name, value)) }
                }
            case Frame.data:
                body += payload.readBytes(length: payload.readableBytes) ?? []
                if frame.payload.readableBytes > 0 {
                    try await windowUpdate(stream: 0, by: UInt32(frame.payload.readableBytes))
                    try await windowUpdate(stream: stream, by: UInt32(frame.payload.readableBytes))
                }
            case Frame.rstStream:
                throw Closed()
            default:
                break
            }
            if frame.flags & Frame.endStream != 0 { return Response(status: status, fields: fields, body: body) }
        }
    }

    func windowUpdate(stream: UInt32, by increment: UInt32) async throws {
        var payload = ByteBuffer()
        payload.writeInteger(increment)
        try await send(Self.frame(Frame.windowUpdate, 0, stream, payload))
    }

    /// The next frame for `stream` (frames of others are kept for later; PINGs answered).
    func nextFrame(on stream: UInt32) async throws -> Frame {
        if let index = held.firstIndex(where: { $0.stream == stream }) { return held.remove(at: index) }
        while true {
            let frame = try await readFrame()
            if frame.stream == stream { return frame }
            if frame.type == Frame.goAway { throw Closed() }
            if frame.stream != 0 { held.append(frame) }
        }
    }

    /// The next frame from the server; `Closed` once the connection ends.
    func readFrame() async throws -> Frame {
        while true {
            if pending.readableBytes >= 9,
                let length = pending.getInteger(at: pending.readerIndex, as: UInt32.self).map({ $0 >> 8 }),
                pending.readableBytes >= 9 + Int(length)
            {
                pending.moveReaderIndex(forwardBy: 3)
                let type = pending.readInteger(as: UInt8.self)!
                let flags = pending.readInteger(as: UInt8.self)!
                let stream = pending.readInteger(as: UInt32.self)! & 0x7FFF_FFFF
                let payload = pending.readSlice(length: Int(length))!
                var frame = Frame(type: type, flags: flags, stream: stream, payload: payload)
                if type == Frame.headers {
                    var block = payload
                    frame.fields = try decoder.decodeHeaders(from: &block).map { ($0.name, $0.value) }
                }
                if type == Frame.goAway { goAway = frame }
                return frame
            }
            guard let bytes = try await inbound.next() else { throw Closed() }
            pending.writeImmutableBuffer(bytes)
        }
    }

    /// Reads until the server closes the connection (frames in the meantime are dropped);
    /// whether it did before `deadline`.
    func closedByServer(within deadline: Duration) async throws -> Bool {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    while true { _ = try await self.readFrame() }
                } catch {
                    return true
                }
            }
            group.addTask {
                try await Task.sleep(for: deadline)
                return false
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
    }

    func close() async {
        outbound.finish()
        try? await channel.channel.close()
    }

    deinit { outbound.finish() }
}

/// The error code of a GOAWAY frame (RFC 9113 §6.8): after the last stream id (4 bytes).
extension RawHTTP2.Frame {
    var goAwayCode: UInt32? {
        guard type == Self.goAway else { return nil }
        return payload.getInteger(at: payload.readerIndex + 4, as: UInt32.self)
    }
}
