import HTTPCaching
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// The hit path on an HTTP/2 connection (docs/performance.md): a request whose header block
/// ends its stream and which the store alone can answer with a body already in memory is
/// answered here, on the connection, as a HEADERS frame and a DATA frame written straight to
/// NIO's HTTP/2 handler — no stream channel, no HTTP/1 conversion. Every other stream's frames
/// pass on to NIO's stream multiplexer, whose channels run the same ``HitHandler`` (for bodies
/// streamed from the store) and the pipeline. The decision is ``LoopHitState/answer(_:form:)``,
/// the same as on HTTP/1.1.
///
/// Run by ``HTTP2ConnectionHandler``, between `NIOHTTP2Handler` and `HTTP2StreamMultiplexer`,
/// once the header block has been checked (RFC 9113 §8.2, §8.3). NIO has applied flow control
/// and the flood limits; it buffers a DATA frame its window cannot take yet, and closes the
/// stream once the END_STREAM frame has gone out. The stream's events stop at the connection
/// handler; frames that arrive later for it (WINDOW_UPDATE, RST_STREAM) reach the multiplexer
/// as frames of a stream it does not know, which it drops with an error nothing acts on.
///
/// Zero-window stalls: a response still in NIO's flow-control buffer (its stream not closed)
/// whose window has not moved for `http2.stall_timeout` seconds is reset (RST_STREAM CANCEL),
/// as ``StallGuard`` does on stream channels. A body answered here is one already in memory
/// (one stored chunk, at most ``HitAnswer/http2FrameBodyLimit`` bytes), so what NIO buffers is
/// a slice of it, never a copy.
final class HTTP2ConnectionHits {
    private let state: LoopHitState
    private let stallTimeout: TimeAmount
    private let peer: String?
    /// Streams answered here that NIO has not closed yet — their last frame is still in its
    /// flow-control buffer (or the close event has yet to come) — and when they last made
    /// progress (were answered, or their window moved). A few at a time (at most the
    /// concurrent streams): an array searched from the front costs less than hashing.
    private var pending: [(stream: HTTP2StreamID, since: NIODeadline)] = []
    private var stallTimer: Scheduled<Void>?
    private var wrote = false

    init(state: LoopHitState, stallTimeout: Double, peer: String?) {
        self.state = state
        self.stallTimeout = .milliseconds(Int64(stallTimeout * 1000))
        self.peer = peer
    }

    func stop() {
        stallTimer?.cancel()
        stallTimer = nil
    }

    /// Answers the request whose whole header block this is, if the store can; false passes
    /// the stream on.
    func answered(
        _ request: HTTP2RequestBlock.Request, on stream: HTTP2StreamID, context: ChannelHandlerContext
    )
        -> Bool
    {
        guard let answer = answer(request) else { return false }
        send(answer, on: stream, context: context)
        return true
    }

    /// The end of a read: every answer of it goes out in one flush (one TLS record where they
    /// fit).
    func readComplete(context: ChannelHandlerContext) {
        guard wrote else { return }
        wrote = false
        context.flush()
        if !pending.isEmpty { armStallTimer(context: context) }
    }

    // MARK: deciding

    /// The request of a (checked) HTTP/2 header block, answered from the store if it can be;
    /// nil passes the stream on. Its fields carry the Host `:authority` stands for
    /// (``HTTP2RequestBlock/Request/fields``).
    private func answer(_ block: HTTP2RequestBlock.Request) -> HitAnswer? {
        let method: HTTPMethod
        switch block.method {
        case "GET": method = .GET
        case "HEAD": method = .HEAD
        default: return nil
        }
        // A body announced on a stream that has ended is the pipeline's to refuse.
        guard let path = block.path, !block.hasContentLength else { return nil }
        let request = HitRequest(
            method: method, uri: path, headers: HeaderFields(fields: block.fields), version: .http2, keepAlive: true,
            peer: peer)
        return state.answer(request, form: .http2Frames)
    }

    // MARK: sending

    private func send(_ answer: HitAnswer, on stream: HTTP2StreamID, context: ChannelHandlerContext) {
        guard case .fields(let fields) = answer.head else {
            preconditionFailure("the hit path answers HTTP/2 frames with a header block")
        }
        wrote = true
        state.record(answer, peer: peer)
        // Until NIO closes the stream, which it does once the END_STREAM frame has left its
        // flow-control buffer (``streamClosed(_:)``), the response may be waiting on the client's
        // window.
        pending.append((stream, .now()))
        guard let bytes = answer.bytes else {
            let headers = HTTP2Frame.FramePayload.Headers(headers: fields, endStream: true)
            context.write(NIOAny(HTTP2Frame(streamID: stream, payload: .headers(headers))), promise: nil)
            return
        }
        // The decision only answers here bodies in memory (HitAnswer.Form.http2Frames).
        let body = bytes.inline!.getSlice(
            at: bytes.inline!.readerIndex + Int(answer.lower), length: Int(answer.upper - answer.lower + 1))!
        let headers = HTTP2Frame.FramePayload.Headers(headers: fields, endStream: false)
        context.write(NIOAny(HTTP2Frame(streamID: stream, payload: .headers(headers))), promise: nil)
        let data = HTTP2Frame.FramePayload.Data(data: .byteBuffer(body), endStream: true)
        context.write(NIOAny(HTTP2Frame(streamID: stream, payload: .data(data))), promise: nil)
    }

    /// Whether a stream is one answered here and still open.
    func owns(_ stream: HTTP2StreamID) -> Bool { pending.contains { $0.stream == stream } }

    /// A stream's flow-control window moved (NIO sent some of it, or the client opened it):
    /// progress, if it is one answered here; whether it is.
    func windowMoved(_ stream: HTTP2StreamID) -> Bool {
        guard let index = pending.firstIndex(where: { $0.stream == stream }) else { return false }
        pending[index].since = .now()
        return true
    }

    /// NIO closed a stream (its last frame went out, or it was reset); whether it was one
    /// answered here.
    func streamClosed(_ stream: HTTP2StreamID) -> Bool {
        guard let index = pending.firstIndex(where: { $0.stream == stream }) else { return false }
        pending.remove(at: index)
        return true
    }

    private func armStallTimer(context: ChannelHandlerContext) {
        guard stallTimer == nil, let oldest = pending.lazy.map(\.since).min() else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        stallTimer = context.eventLoop.scheduleTask(deadline: oldest + stallTimeout) {
            let (handler, context) = bound.value
            handler.stallTimer = nil
            handler.resetStalled(context: context)
        }
    }

    private func resetStalled(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        var reset = false
        for (stream, since) in pending where now - since >= stallTimeout {
            reset = true
            state.logger.notice(
                "HTTP/2 stream reset: the client let no data through for the stall timeout",
                metadata: ["peer": "\(peer ?? "-")", "stream": "\(stream)"])
            context.write(NIOAny(HTTP2Frame(streamID: stream, payload: .rstStream(.cancel))), promise: nil)
        }
        pending.removeAll { now - $0.since >= stallTimeout }
        if reset { context.flush() }
        armStallTimer(context: context)
    }
}
