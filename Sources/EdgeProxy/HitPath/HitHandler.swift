import CacheStore
import CacheTransaction
import ContentCoding
import EdgeTelemetry
import HTTPCaching
import NIOCore
import NIOHTTP1
import OutpostConfig

/// The hit path (docs/performance.md): answers, on the connection's event loop and in the
/// same turn that read the request, every request the store can answer by itself — a fresh
/// (or allowed-stale) hit, a 304 to the client's conditional, HEAD, a single Range of a stored
/// 200, a stored coding — with no task, no actor and no process-wide lock. Anything else
/// (misses, validation, request bodies, errors, multipart ranges, decoding on the fly) passes
/// on unchanged to ``PassHandler``, which answers it through `CachePipeline` in a task that
/// ends with the request (``RequestTask``). The decisions are the pipeline's own functions;
/// only the I/O differs. A connection has no task while none of its requests needs one.
///
/// Sits right after the HTTP server pipelining handler (so pipelined requests reach it one at
/// a time, each after the previous response ended), before the protocol-error and timeout
/// handlers and the pass handler: a request answered here costs no trip through
/// them, and the timeouts are told of its head and its response's end directly.
final class HitHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Phase {
        /// Between requests.
        case idle
        /// The current request belongs to the pipeline: its parts pass through.
        case forwarding
        /// The current request is answered here; its remaining parts are read and dropped.
        /// `responseDone`: the whole response was written.
        case answering(responseDone: Bool)
    }

    private let state: LoopHitState
    private let timeouts: ConnectionTimeoutHandler?
    private var phase = Phase.idle
    /// No more requests are answered here: the pipeline sent `Connection: close`, or this
    /// handler is closing the connection.
    private var closing = false
    /// A stored body being sent chunk by chunk as the socket takes it.
    private var stream: BodyStream?
    private var peer: String?

    /// Shared with the connection's `ExtensionMethodDecoder`: counted here, where every part
    /// passes, instead of in a handler of its own (a handler costs a cast per part).
    private let boundaries: RequestBoundaries?

    /// On an HTTP/2 stream: requests come as HTTP/2.0 from NIO's codec, and heads go out as
    /// fields for HPACK, never as serialised HTTP/1.1 bytes.
    private let http2: Bool
    /// The connection's busy flag (nil on an HTTP/2 stream: ``HTTP2StreamCount`` keeps it).
    private let activity: ConnectionActivity?

    init(
        state: LoopHitState, timeouts: ConnectionTimeoutHandler?, boundaries: RequestBoundaries? = nil,
        http2: Bool = false, activity: ConnectionActivity?
    ) {
        self.state = state
        self.activity = activity
        self.timeouts = timeouts
        self.boundaries = boundaries
        self.http2 = http2
    }

    func channelActive(context: ChannelHandlerContext) {
        peer = context.channel.remoteAddress?.ipAddress
        context.fireChannelActive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        peer = context.channel.remoteAddress?.ipAddress
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if let boundaries {
            switch part {
            case .head(let head):
                if let restored = boundaries.receivedHead(head) {
                    received(.head(restored), wrapInboundOut(.head(restored)), context: context)
                    return
                }
            case .end:
                boundaries.ends &+= 1
            case .body:
                break
            }
        }
        received(part, data, context: context)
    }

    @inline(__always)
    private func received(_ part: HTTPServerRequestPart, _ data: NIOAny, context: ChannelHandlerContext) {
        switch (phase, part) {
        case (.idle, .head(let head)):
            if !closing, let answer = answer(head) {
                phase = .answering(responseDone: false)
                timeouts?.headReceived()
                send(answer, context: context)
            } else {
                phase = .forwarding
                forward(data, context: context)
            }
        case (.forwarding, .end):
            phase = .idle
            forward(data, context: context)
        case (.forwarding, _), (.idle, _):
            forward(data, context: context)
        case (.answering(let done), .end):
            if done {
                phase = .idle
            } else {
                requestEnded = true
            }
        case (.answering, _):
            break
        }
    }

    /// The request being answered here has been read to its end.
    private var requestEnded = false

    /// Passes a request part on to the pipeline's task (``PassHandler``).
    private func forward(_ data: NIOAny, context: ChannelHandlerContext) {
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // A response from the pipeline that closes the connection: nothing after it is ours.
        switch unwrapOutboundIn(data) {
        case .head(let head):
            if !head.isKeepAlive { closing = true }
        case .end:
            // Before the write: writing an end can deliver the next pipelined request at once.
            boundaries?.responsesEnded &+= 1
        case .body:
            break
        }
        context.write(data, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, stream != nil { pump(context: context) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if stream != nil {
            stream = nil
            activity?.setBusy(false)
        }
        context.fireChannelInactive()
    }

    // MARK: deciding

    /// The answer to a request when the store alone can give it; nil sends it to the pipeline.
    private func answer(_ head: HTTPRequestHead) -> HitAnswer? {
        guard head.version == (http2 ? .http2 : .http1_1),
            !head.headers.contains(name: "content-length"), !head.headers.contains(name: "transfer-encoding")
        else { return nil }
        var fields: [HeaderFields.Field] = []
        fields.reserveCapacity(head.headers.count)
        for (name, value) in head.headers {
            // An Upgrade request stops the decoder after it (the bytes that follow would be the
            // new protocol's): the pipeline answers it and closes the connection.
            if name.utf8.count == 7, name.equalsIgnoringASCIICase("upgrade") { return nil }
            fields.append(HeaderFields.Field(name: name, value: value))
        }
        let request = HitRequest(
            method: head.method, uri: head.uri, headers: HeaderFields(fields: fields), version: head.version,
            keepAlive: head.isKeepAlive, peer: peer)
        return state.answer(request, form: http2 ? .http2Stream : .http1)
    }

    // MARK: sending

    private struct BodyStream {
        var answer: HitAnswer
        var bytes: StoredBytes
        /// The next byte to send and the chunk that holds it.
        var position: Int64
        var index: Int
    }

    /// Bodies up to this size go out in the same buffer as a serialised head (one write).
    static let coalesceLimit = 16 << 10

    private func send(_ answer: HitAnswer, context: ChannelHandlerContext) {
        var serialised: ByteBuffer?
        switch answer.head {
        case .parts(let head):
            context.write(wrapOutboundOut(.head(head)), promise: nil)
        case .serialised(let bytes):
            context.write(wrapOutboundOut(.head(PreparedResponse.head)), promise: nil)
            serialised = bytes
        case .fields:
            preconditionFailure("HTTP/2 header blocks are HTTP2ConnectionHits's")
        }
        guard let bytes = answer.bytes else {
            if let serialised { context.write(wrapOutboundOut(.body(.byteBuffer(serialised))), promise: nil) }
            finish(answer, context: context)
            return
        }
        if let inline = bytes.inline,
            var slice = inline.getSlice(
                at: inline.readerIndex + Int(answer.lower), length: Int(answer.upper - answer.lower + 1))
        {
            // The common hit: head, body and end in one flush, and for a small body one buffer.
            if serialised != nil, slice.readableBytes <= HitHandler.coalesceLimit {
                serialised!.writeBuffer(&slice)
                context.write(wrapOutboundOut(.body(.byteBuffer(serialised!))), promise: nil)
            } else {
                if let serialised { context.write(wrapOutboundOut(.body(.byteBuffer(serialised))), promise: nil) }
                context.write(wrapOutboundOut(.body(.byteBuffer(slice))), promise: nil)
            }
            finish(answer, context: context)
            return
        }
        if let head = serialised.take() { context.write(wrapOutboundOut(.body(.byteBuffer(head))), promise: nil) }
        let index = Int(answer.lower / bytes.chunkSize)
        stream = BodyStream(answer: answer, bytes: bytes, position: answer.lower, index: index)
        // Busy while it streams: a graceful shutdown lets the response finish.
        activity?.setBusy(true)
        pump(context: context)
    }

    /// Sends chunks while the socket takes them: one chunk is read (copied once out of the
    /// map, in a read transaction that ends at once) only when the channel is writable, so a
    /// slow client holds at most a chunk and the channel's buffer, and no reader stays open.
    private func pump(context: ChannelHandlerContext) {
        while var current = stream, current.position <= current.answer.upper {
            guard context.channel.isWritable else {
                context.flush()
                return
            }
            let chunk = try? state.session.readChunk(objectID: current.bytes.owner, index: current.index)
            guard
                let slice = chunk.flatMap({
                    current.bytes.part(
                        of: $0, index: current.index, lower: current.position, upper: current.answer.upper)
                })
            else {
                // Evicted or replaced while it was being sent: the client must see a cut.
                state.logger.warning(
                    "stored body disappeared while being served",
                    metadata: ["url": "\(current.answer.url)", "object": "\(current.bytes.owner)"])
                abort(context: context)
                return
            }
            current.position += Int64(slice.readableBytes)
            current.index += 1
            stream = current
            context.write(wrapOutboundOut(.body(.byteBuffer(slice))), promise: nil)
        }
        guard let done = stream else { return }
        stream = nil
        activity?.setBusy(false)
        finish(done.answer, context: context)
    }

    private func finish(_ answer: HitAnswer, context: ChannelHandlerContext) {
        // The state moves before `.end` is written: writing it can deliver the next pipelined
        // request to this handler at once. A graceful shutdown closes the connection after a
        // response that was under way when it began (no task is there to do it).
        let closes = answer.closes || state.registry.isDraining
        if closes { closing = true }
        if requestEnded {
            phase = .idle
        } else {
            phase = .answering(responseDone: true)
        }
        requestEnded = false
        state.record(answer, peer: peer)
        timeouts?.responseEnded()
        boundaries?.responsesEnded &+= 1
        if closes {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    private func abort(context: ChannelHandlerContext) {
        if let answer = stream?.answer {
            state.accessLog.record(
                method: answer.method, url: answer.url, status: 0, bytes: 0, seconds: 0, cacheStatus: nil,
                note: "aborted: stored body disappeared", peer: peer)
        }
        stream = nil
        closing = true
        activity?.setBusy(false)
        context.close(promise: nil)
    }
}
