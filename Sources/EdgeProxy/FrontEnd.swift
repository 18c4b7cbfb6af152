import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import NIOTLS
import OutpostConfig

/// How one accepted connection is served: HTTP/1.1 on the plain listeners; on the TLS
/// listener, TLS and then HTTP/1.1 or HTTP/2 as ALPN chose (docs/tls.md). Every request, on
/// either protocol, goes through the same hit path (``HitHandler``) and the same transaction
/// (``PassHandler``, ``RequestTask``).
extension OutpostServer.FrontEnd {
    /// The HTTP/1.1 handlers: NIO's decoder and pipelining, Outpost's response encoder (which
    /// writes the hit path's serialised heads as they are), the hit path, errors, timeouts,
    /// and the pass handler. Runs on the connection's event loop.
    func serveHTTP1(_ channel: any Channel, server: OutpostConfiguration.Server) throws {
        // The decoder's own limits sit above ours so that RequestValidation can tell a
        // long URI (414) from a large header section (431); far beyond both, the decoder
        // stops reading.
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderFieldSize = 2 * max(server.maxHeaderBytes, server.maxURILength)
        decoderLimits.maxHeaderListSize = server.maxHeaderBytes + 2 * server.maxURILength
        decoderLimits.maxHeaderFieldCount = server.maxHeaders + 1
        // Shared by the decoder and HitHandler, on this connection's event loop.
        let boundaries = RequestBoundaries()
        let sync = channel.pipeline.syncOperations
        let decoder = HTTPRequestDecoder(
            leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop,
            limitConfiguration: decoderLimits)
        // Traffic: the decoder learns any method token (ExtensionMethodDecoder, which the hit
        // path keeps informed of where requests begin). The admin API has only GET, HEAD and
        // POST.
        let framing: any ChannelHandler =
            hitPath != nil
            ? ByteToMessageHandler(ExtensionMethodDecoder(decoder, boundaries: boundaries))
            : ByteToMessageHandler(decoder)
        try sync.addHandlers([framing, ResponseEncoder(), HTTPServerPipelineHandler()])
        let timeoutHandler =
            timeouts
            ? ConnectionTimeoutHandler(
                idleTimeout: server.idleTimeout, headerTimeout: server.requestHeaderTimeout,
                bodyTimeout: server.requestBodyTimeout, logger: logger) : nil
        // The hit path sits right after the HTTP pipelining handler: a request it answers goes
        // through no other handler either way (it tells the timeouts itself); every other
        // request passes on to the handlers below.
        let activity = registry.activity(of: channel)
        if let hitState = hitPath?.state(for: channel.eventLoop) {
            try sync.addHandler(
                HitHandler(state: hitState, timeouts: timeoutHandler, boundaries: boundaries, activity: activity))
        }
        try sync.addHandler(ProtocolErrorHandler(logger: logger))
        if let timeoutHandler {
            try sync.addHandler(FirstByteObserver(timeouts: timeoutHandler), position: .first)
            try sync.addHandler(timeoutHandler)
        }
        // What the hit path passes on (every admin request) becomes a task per request.
        try sync.addHandler(PassHandler(requests: passed, activity: activity))
    }

    /// TLS with the certificates current now; once the handshake is done, HTTP/2 if ALPN
    /// chose `h2`, else HTTP/1.1. A handshake (and negotiation) not done within
    /// `server.request_header_timeout` closes the connection.
    func startTLS(
        _ channel: any Channel, configuration: OutpostConfiguration,
        certificates: NIOLockedValueBox<TLSCertificateSet>
    ) throws {
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(NIOSSLServerHandler(context: certificates.withLockedValue { $0.context }))
        // One TLS record for the small writes of one flush, not one each.
        try sync.addHandler(TLSRecordCoalescer())
        let deadline = channel.eventLoop.scheduleTask(
            in: .milliseconds(Int64(configuration.server.requestHeaderTimeout * 1000))
        ) {
            channel.close(promise: nil)
        }
        let front = self
        let bound = NIOLoopBound(channel, eventLoop: channel.eventLoop)
        try sync.addHandler(
            ApplicationProtocolNegotiationHandler { result, _ in
                deadline.cancel()
                let channel = bound.value
                return channel.eventLoop.makeCompletedFuture {
                    if result == .negotiated("h2") && configuration.http2.enabled {
                        try front.serveHTTP2(channel, configuration: configuration)
                    } else {
                        try front.serveHTTP1(channel, server: configuration.server)
                    }
                }
            })
        channel.closeFuture.whenComplete { _ in deadline.cancel() }
    }

    /// HTTP/2 (RFC 9113): NIO's frame handler with the `[http2]` limits; hits answered on the
    /// connection (``HTTP2ConnectionHits``); every other stream through NIO's multiplexer to a
    /// channel of its own with the same hit path and pass handler as an HTTP/1.1 request,
    /// through NIO's HTTP/2 to HTTP/1 codec. The connection is busy (for a graceful shutdown)
    /// while it has streams, closes after `server.idle_timeout` without any, and at a drain once
    /// the last ends.
    func serveHTTP2(_ channel: any Channel, configuration: OutpostConfiguration) throws {
        let limits = configuration.http2
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: limits.maxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: limits.maxHeaderListSize),
            HTTP2Setting(parameter: .headerTableSize, value: limits.headerTableSize),
            HTTP2Setting(parameter: .maxFrameSize, value: limits.maxFrameSize),
            HTTP2Setting(parameter: .initialWindowSize, value: limits.initialWindowSize),
        ]
        // Received header blocks are checked by HTTP2ConnectionHandler. Sent ones are not checked
        // again: their fields come from HTTP/1.1 responses whose parser checked them, lower-cased
        // on the way (HPACKHeaders(httpHeaders:)), or are Outpost's own.
        connection.headerBlockValidation = .disabled
        connection.maximumSequentialContinuationFrames = limits.maxContinuationFrames
        connection.maximumConnectionGlitches = limits.maxGlitches
        connection.controlFrameRateLimit.maximumCount = limits.maxControlFrames
        connection.controlFrameRateLimit.windowLength = .milliseconds(Int64(limits.controlWindow * 1000))
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.streamResetFrameRateLimit.maximumCount = limits.maxResets
        stream.streamResetFrameRateLimit.windowLength = .milliseconds(Int64(limits.resetWindow * 1000))
        let server = configuration.server
        let sync = channel.pipeline.syncOperations
        // The frames come out of NIO's handler on the connection (no inline multiplexer), so
        // that the hit path sees each stream's header block before any stream channel exists.
        try sync.addHandler(
            NIOHTTP2Handler(mode: .server, connectionConfiguration: connection, streamConfiguration: stream))
        let hits = hitPath?.state(for: channel.eventLoop).map {
            HTTP2ConnectionHits(
                state: $0, stallTimeout: limits.stallTimeout,
                peer: channel.remoteAddress?.ipAddress)
        }
        try sync.addHandler(
            HTTP2ConnectionHandler(
                streams: HTTP2StreamCount(
                    registry: registry, activity: registry.activity(of: channel), idleTimeout: server.idleTimeout),
                hits: hits,
                connectionWindow: limits.connectionWindowSize, logger: logger))
        let front = self
        try sync.addHandler(
            HTTP2StreamMultiplexer(
                mode: .server, channel: channel, targetWindowSize: limits.initialWindowSize,
                outboundBufferSizeHighWatermark: stream.outboundBufferSizeHighWatermark,
                outboundBufferSizeLowWatermark: stream.outboundBufferSizeLowWatermark
            ) { stream in
                stream.eventLoop.makeCompletedFuture {
                    try front.serveStream(stream, server: server, stallTimeout: limits.stallTimeout)
                }
            })
    }

    /// One HTTP/2 stream: one request, answered as an HTTP/1.1 one would be.
    private func serveStream(_ stream: any Channel, server: OutpostConfiguration.Server, stallTimeout: Double) throws {
        let sync = stream.pipeline.syncOperations
        try sync.addHandler(HTTP2FramePayloadToHTTP1ServerCodec())
        // Right after the codec: every response part, the hit path's too, passes it.
        try sync.addHandler(StallGuard(timeout: stallTimeout, logger: logger))
        // The whole header block has arrived with the stream, and the connection's idle time is
        // HTTP2StreamCount's: only a request body's pace is timed here.
        if let hitState = hitPath?.state(for: stream.eventLoop) {
            try sync.addHandler(HitHandler(state: hitState, timeouts: nil, http2: true, activity: nil))
        }
        // No ProtocolErrorHandler: a stream's protocol errors are NIO's to answer (RST_STREAM).
        if timeouts { try sync.addHandler(StreamBodyTimeout(timeout: server.requestBodyTimeout, logger: logger)) }
        try sync.addHandler(PassHandler(requests: passed, activity: nil))
    }
}
