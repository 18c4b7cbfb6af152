import NIOCore
import NIOHTTP1

/// What `ExtensionMethodDecoder` learns from `HitHandler` on one connection (both on its
/// event loop): the requests and responses it has seen, and the extension method it is to put
/// back into the next head.
///
/// HitHandler sits after NIO's `HTTPServerPipelineHandler`, which holds back the parts of a
/// pipelined request while a request has been read whose response has not ended. So the
/// counts are those of every part the decoder emitted only while `quiet`.
final class RequestBoundaries {
    /// Request heads HitHandler has received.
    var heads = 0
    /// Request ends HitHandler has received.
    var ends = 0
    /// Final responses whose end was written through HitHandler.
    var responsesEnded = 0
    /// The extension method swapped for `MethodToken.standIn` in the head being parsed.
    var pending: String?

    init() {}

    /// No request has been read whose response is still under way, so nothing is held back:
    /// HitHandler has seen every part the decoder emitted, and sees the next ones as they are
    /// emitted.
    var quiet: Bool { ends <= responsesEnded }

    /// The last part HitHandler received was a request's end (every head has had its end).
    var betweenRequests: Bool { heads == ends }

    /// Counts a request part HitHandler received; for a head whose method was swapped, returns
    /// it with the extension method put back.
    func received(_ part: HTTPServerRequestPart) -> HTTPRequestHead? {
        switch part {
        case .head(let head):
            return receivedHead(head)
        case .end:
            ends &+= 1
            return nil
        case .body:
            return nil
        }
    }

    /// `received` for a head (HitHandler's hot path calls this and counts ends itself).
    @inline(__always)
    func receivedHead(_ head: HTTPRequestHead) -> HTTPRequestHead? {
        heads &+= 1
        guard pending != nil else { return nil }
        return restore(head)
    }

    private func restore(_ head: HTTPRequestHead) -> HTTPRequestHead? {
        guard let method = pending else { return nil }
        pending = nil
        guard head.method.rawValue == MethodToken.standInName else { return nil }
        var restored = head
        restored.method = .RAW(value: method)
        return restored
    }
}

/// NIO's HTTP/1 request decoder, taught any method token (RFC 9110 §9.1).
///
/// llhttp refuses methods outside its list. Where a request starts, this decoder reads the
/// method token first (`MethodToken`); an extension method is replaced by
/// `MethodToken.standIn` before llhttp sees it, and `HitHandler` puts it back into the parsed
/// head (`RequestBoundaries.restore`). llhttp still parses and checks everything else, so
/// framing and the smuggling checks are unchanged, and a request llhttp would take is never
/// touched.
///
/// Where a request starts is learnt without a second parser, from what llhttp emits (as
/// counted by HitHandler), at the end of each read:
/// - A read that ends with an empty line (a whole head, the usual read) ended exactly at a
///   request's end if the last part emitted was an end: bytes of a next request that end in
///   an empty line make a head (or an error), and empty lines alone are skipped before a
///   request line. This is settled when the next read arrives, once HitHandler has seen
///   every part (`RequestBoundaries.quiet`).
/// - Any other read has its last byte fed on its own: llhttp emits a request's end in the
///   call that feeds its last byte, so if an end came from that call (seen at once, when
///   `quiet`), the next read starts a request.
/// The first request of a connection and every request that begins a read are covered. An
/// extension method on a request that shares a read with the end of the previous one, or
/// follows a request whose response was still under way when its read ended with a body,
/// is refused by llhttp (400), as before (docs/conformance.md).
struct ExtensionMethodDecoder: ByteToMessageDecoder {
    typealias InboundOut = HTTPServerRequestPart

    /// What the end of the previous read says about where the next one starts.
    private enum Start {
        case yes
        case no
        /// If, once every part has been seen, the last one was a request's end.
        case ifLastPartWasEnd
    }

    private let inner: HTTPRequestDecoder
    private let boundaries: RequestBoundaries
    private var start = Start.yes

    init(_ inner: HTTPRequestDecoder, boundaries: RequestBoundaries) {
        self.inner = inner
        self.boundaries = boundaries
    }

    private func startsRequest() -> Bool {
        switch start {
        case .yes: true
        case .no: false
        case .ifLastPartWasEnd: boundaries.quiet && boundaries.betweenRequests
        }
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard buffer.readableBytes > 0 else { return .needMoreData }
        if start != .no, !MethodToken.startsWithGETOrHEAD(buffer), startsRequest() {
            switch MethodToken.classify(buffer.readableBytesView) {
            case .needMore:
                // Held back (ByteToMessageHandler keeps the bytes) until the token ends;
                // bounded by MethodToken.maxLength, past which classify gives up.
                return .needMoreData
            case .leave:
                break
            case .extensionMethod(let offset, let length):
                boundaries.pending = buffer.getString(at: buffer.readerIndex + offset, length: length)
                var rewritten = context.channel.allocator.buffer(
                    capacity: buffer.readableBytes - length + MethodToken.standIn.count)
                rewritten.writeBytes(buffer.readableBytesView.prefix(offset))
                rewritten.writeBytes(MethodToken.standIn)
                rewritten.writeBytes(buffer.readableBytesView.dropFirst(offset + length))
                buffer = rewritten
            }
        }
        if Self.endsWithEmptyLine(buffer) {
            _ = try inner.decode(context: context, buffer: &buffer)
            start = buffer.readableBytes == 0 ? .ifLastPartWasEnd : .no
            return .needMoreData
        }
        // All but the last byte, then the last byte alone. NIO's decoder may leave bytes of a
        // field split across reads unconsumed; it expects them again, followed by the new
        // bytes, which is what the second call gives it.
        if buffer.readableBytes > 1 {
            var front = buffer.getSlice(at: buffer.readerIndex, length: buffer.readableBytes - 1)!
            _ = try inner.decode(context: context, buffer: &front)
            buffer.moveReaderIndex(forwardBy: front.readerIndex)
        }
        let quiet = boundaries.quiet
        let endsBefore = boundaries.ends
        _ = try inner.decode(context: context, buffer: &buffer)
        start = quiet && boundaries.ends != endsBefore && buffer.readableBytes == 0 ? .yes : .no
        return .needMoreData
    }

    /// The read ends with CR LF CR LF.
    static func endsWithEmptyLine(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            bytes.count >= 4
                && bytes.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self).bigEndian == 0x0D0A_0D0A
        }
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        try inner.decodeLast(context: context, buffer: &buffer, seenEOF: seenEOF)
    }

    mutating func decoderAdded(context: ChannelHandlerContext) {
        inner.decoderAdded(context: context)
    }

    mutating func decoderRemoved(context: ChannelHandlerContext) {
        inner.decoderRemoved(context: context)
    }
}
