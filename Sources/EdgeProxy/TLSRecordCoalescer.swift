import NIOCore

/// Joins the small writes made between two flushes into one buffer before they reach TLS.
///
/// NIO's TLS handler seals every write it is given as a TLS record of its own, and NIO's
/// HTTP/2 handler writes a response as three buffers (the HEADERS frame, the DATA frame's
/// header, its payload): a read of ten pipelined 1 KiB hits went out as thirty records, each
/// with its own seal and 22 bytes of overhead. Joined, it is one or two records
/// (tools/bench-instructions --h2). Bytes are copied into the joined buffer only up to one TLS
/// record's plaintext (16 KiB, RFC 8446 §5.1); a larger write goes out as it is, after what
/// was gathered before it, so order is kept and large bodies are never copied.
final class TLSRecordCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let recordSize = 16 * 1024

    private var gathered: ByteBuffer?
    /// Whether `gathered` is a buffer of ours (else the one write it holds, not copied).
    private var joined = false
    /// The promises of the writes in `gathered`, completed with its write.
    private var promises: [EventLoopPromise<Void>] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var buffer = unwrapOutboundIn(data)
        let size = buffer.readableBytes
        if size > Self.recordSize / 2 {
            emit(context: context)
            context.write(data, promise: promise)
            return
        }
        if let gathered, gathered.readableBytes + size > Self.recordSize { emit(context: context) }
        if gathered == nil {
            // Kept as it is until a second write comes: a lone write is never copied.
            gathered = buffer
            joined = false
        } else {
            if !joined {
                var first = gathered!
                var copy = context.channel.allocator.buffer(
                    capacity: min(Self.recordSize, 4 * (first.readableBytes + size)))
                copy.writeBuffer(&first)
                gathered = copy
                joined = true
            }
            gathered!.writeBuffer(&buffer)
        }
        if let promise { promises.append(promise) }
    }

    func flush(context: ChannelHandlerContext) {
        emit(context: context)
        context.flush()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // Unflushed writes fail at a close, as NIO's own.
        if mode != .input { drop(ChannelError.ioOnClosedChannel) }
        context.close(mode: mode, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        emit(context: context)
    }

    private func emit(context: ChannelHandlerContext) {
        guard let buffer = gathered.take() else { return }
        switch promises.count {
        case 0:
            context.write(wrapOutboundOut(buffer), promise: nil)
        case 1:
            context.write(wrapOutboundOut(buffer), promise: promises[0])
            promises.removeAll(keepingCapacity: true)
        default:
            let written = context.eventLoop.makePromise(of: Void.self)
            for promise in promises { written.futureResult.cascade(to: promise) }
            promises.removeAll(keepingCapacity: true)
            context.write(wrapOutboundOut(buffer), promise: written)
        }
    }

    private func drop(_ error: any Error) {
        gathered = nil
        let failed = promises
        promises.removeAll()
        for promise in failed { promise.fail(error) }
    }
}
