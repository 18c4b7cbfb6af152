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
    /// The methods of the requests placed in a read whose head llhttp parses as
    /// `MethodToken.standIn`, oldest first: each extension method swapped for it, and a client's
    /// own UNBIND so that the order holds.
    var pending: [String] = []

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
        guard !pending.isEmpty else { return nil }
        return restore(head)
    }

    private func restore(_ head: HTTPRequestHead) -> HTTPRequestHead? {
        guard head.method.rawValue == MethodToken.standInName else { return nil }
        let method = pending.removeFirst()
        guard method != MethodToken.standInName else { return nil }
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
/// Within a read that starts a request, the requests after it are placed from their heads
/// (`PipelinedHead`): while a head has no body, the next request starts after its empty line,
/// and its method is read too; a read that ends inside that method token is parsed up to the
/// token, which waits for the rest. The first request of a connection, every request that
/// begins a read and every one that follows body-less requests in its read are covered. An
/// extension method on a request that follows, in the same read, a request with a body (or a
/// head `PipelinedHead` cannot place), or that follows a request whose response was still
/// under way when its read ended with a body, is refused by llhttp (400), as before
/// (docs/conformance.md).
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
        if start != .no, startsRequest() {
            let placed = Self.place(buffer)
            if placed.waitForToken { return .needMoreData }
            if !placed.marks.isEmpty {
                boundaries.pending.append(contentsOf: placed.marks.map(\.method))
                buffer = Self.rewritten(buffer, placed.marks, allocator: context.channel.allocator)
            }
            if let tokenAt = placed.partialTokenAt {
                // The read ends inside the next request's method: parse up to it; the token
                // waits (ByteToMessageHandler keeps the bytes) and starts the next call.
                let shift = placed.marks.reduce(0) { $0 + ($1.length > 0 ? MethodToken.standIn.count - $1.length : 0) }
                var front = buffer.getSlice(at: buffer.readerIndex, length: tokenAt + shift)!
                _ = try inner.decode(context: context, buffer: &front)
                buffer.moveReaderIndex(forwardBy: front.readerIndex)
                start = front.readableBytes == 0 ? .yes : .no
                return .needMoreData
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

    /// A request placed in a read whose method llhttp will see as the stand-in.
    struct Mark: Equatable {
        /// Offset of its method token in the read.
        var offset: Int
        /// The token's length; 0 for a client's own UNBIND, left as it is.
        var length: Int
        var method: String
    }

    /// What the requests a read begins with say about their methods (see `PipelinedHead`).
    struct Placement: Equatable {
        var marks: [Mark] = []
        /// The read's first request has only part of its method yet: wait for more.
        var waitForToken = false
        /// The read ends inside the method of a later request, which starts at this offset.
        var partialTokenAt: Int?
    }

    /// Reads the method of each request it can place in a read that begins with a request.
    /// GET and HEAD are settled from their first bytes; every other token is classified.
    static func place(_ buffer: ByteBuffer) -> Placement {
        buffer.withUnsafeReadableBytes { bytes in
            var placement = Placement()
            var position = 0
            while position < bytes.count {
                let rest = UnsafeRawBufferPointer(rebasing: bytes[position...])
                if !MethodToken.startsWithGETOrHEAD(rest) {
                    switch MethodToken.classify(rest) {
                    case .needMore:
                        if position == 0 { placement.waitForToken = true } else { placement.partialTokenAt = position }
                        return placement
                    case .leave:
                        if let token = firstToken(rest), token.elementsEqual(MethodToken.standIn) {
                            placement.marks.append(
                                Mark(offset: position, length: 0, method: MethodToken.standInName))
                        }
                    case .extensionMethod(let offset, let length):
                        let token = UnsafeRawBufferPointer(rebasing: rest[offset..<offset + length])
                        placement.marks.append(
                            Mark(
                                offset: position + offset, length: length,
                                method: String(decoding: token, as: UTF8.self)))
                    }
                }
                guard case .endsAt(let end) = PipelinedHead.scan(bytes, from: position) else { return placement }
                // A body that goes on past the read: the next read is not known to start a request.
                position = end
            }
            return placement
        }
    }

    /// The token a request line starts with, after any leading empty lines.
    private static func firstToken(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer.SubSequence? {
        let start = RequestLineStart.skippingEmptyLines(bytes)
        guard start < bytes.count, let space = bytes[start...].firstIndex(of: UInt8(ascii: " ")) else { return nil }
        return bytes[start..<space]
    }

    /// The read with each marked extension method replaced by the stand-in.
    static func rewritten(_ buffer: ByteBuffer, _ marks: [Mark], allocator: ByteBufferAllocator) -> ByteBuffer {
        let swapped = marks.filter { $0.length > 0 }
        guard !swapped.isEmpty else { return buffer }
        var result = allocator.buffer(
            capacity: buffer.readableBytes + swapped.count * MethodToken.standIn.count)
        let bytes = buffer.readableBytesView
        var copied = 0
        for mark in swapped {
            result.writeBytes(bytes.dropFirst(copied).prefix(mark.offset - copied))
            result.writeBytes(MethodToken.standIn)
            copied = mark.offset + mark.length
        }
        result.writeBytes(bytes.dropFirst(copied))
        return result
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
