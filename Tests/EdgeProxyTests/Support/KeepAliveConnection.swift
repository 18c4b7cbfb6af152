import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// One HTTP/1.1 connection kept open across requests (to show a reload does not drop it).
/// Its writer is finished by ``close()`` or, if a test fails before that, by its deinit.
final class KeepAliveConnection {
    private let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var pending = ""

    /// What ALPN chose, on a TLS connection (nil: nothing, or plain TCP).
    let negotiatedProtocol: String?

    /// Connects; over TLS with `tls` (a client context), naming `serverName` in SNI.
    init(port: Int, tls: NIOSSLContext? = nil, serverName: String? = nil) async throws {
        let (channel, handshake) = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    var handshake: EventLoopFuture<String?>?
                    if let tls {
                        let recorder = ALPNRecorder(channel.eventLoop.makePromise())
                        handshake = recorder.handshake.futureResult
                        try channel.pipeline.syncOperations.addHandlers([
                            try NIOSSLClientHandler(context: tls, serverHostname: serverName), recorder,
                        ])
                    }
                    return (
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel), handshake
                    )
                }
            }
        self.channel = channel
        inbound = channel.inbound.makeAsyncIterator()
        outbound = channel.outbound
        negotiatedProtocol = try await handshake?.get() ?? nil
    }

    /// The certificate the server presented (TLS).
    func peerCertificate() async throws -> NIOSSLCertificate? {
        try await channel.channel.nioSSL_peerCertificate().get()
    }

    /// The TLS version in use.
    func tlsVersion() async throws -> TLSVersion? {
        try await channel.channel.nioSSL_tlsVersion().get()
    }

    /// Sends a GET and returns the status line, headers and body of its response.
    func get(_ path: String, host: String) async throws -> (head: String, body: String) {
        try await outbound.write(ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\r\n"))
        while !pending.contains("\r\n\r\n") {
            guard let buffer = try await inbound.next() else { throw CrashTestError("connection closed") }
            pending += String(buffer: buffer)
        }
        let split = pending.range(of: "\r\n\r\n")!
        let head = String(pending[..<split.lowerBound])
        pending = String(pending[split.upperBound...])
        let lengthLine = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
        let length = Int(lengthLine?.split(separator: ":")[1].trimmingCharacters(in: .whitespaces) ?? "0") ?? 0
        while pending.utf8.count < length {
            guard let buffer = try await inbound.next() else { throw CrashTestError("connection closed") }
            pending += String(buffer: buffer)
        }
        let body = String(pending.prefix(length))
        pending = String(pending.dropFirst(length))
        return (head, body)
    }

    /// Finishes the writer before closing: the channel was wrapped without
    /// `executeThenClose`, and NIO traps when an unfinished writer is deinitialised. The close
    /// future succeeds before the channel's inactive event reaches the writer, so closing alone
    /// leaves a window in which dropping this object crashes the test process.
    func close() async {
        outbound.finish()
        try? await channel.channel.close()
    }

    deinit { outbound.finish() }
}

/// Completes with the protocol ALPN chose once the TLS handshake is done.
final class ALPNRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let handshake: EventLoopPromise<String?>

    init(_ handshake: EventLoopPromise<String?>) { self.handshake = handshake }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let negotiated) = event { handshake.succeed(negotiated) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        handshake.fail(error)
        context.fireErrorCaught(error)
    }

    /// Whatever happened to the connection, the promise is completed (a no-op if it was).
    func handlerRemoved(context: ChannelHandlerContext) {
        handshake.fail(ChannelError.ioOnClosedChannel)
    }
}
