import CompressNIO
import NIOCore

private let outputStep = 64 * 1024

/// gzip encoder (RFC 1952) through compress-nio.
public final class GzipEncoder: StreamCoder {
    private let compressor: ZlibCompressor

    /// - Parameters:
    ///   - level: 1 (fastest) to 9 (smallest).
    ///   - windowBits: the history window, 2^9 to 2^15 bytes. A window no larger than the
    ///     body compresses it the same and keeps deflate's state (window and hash table, 256 KiB
    ///     at the defaults, allocated and cleared per encoder) small for small bodies.
    public init(level: Int = 6, windowBits: Int = 15) throws {
        let window = Int32(max(9, min(15, windowBits)))
        do {
            compressor = try ZlibCompressor(
                algorithm: .gzip,
                configuration: .init(
                    windowSize: window, compressionLevel: Int32(max(1, min(9, level))),
                    memoryLevel: max(1, min(8, window - 7))))
        } catch {
            throw CodingError.unavailable("gzip: \(error)")
        }
    }

    public func process(_ input: ByteBuffer) throws -> ByteBuffer {
        var input = input
        var output = ByteBuffer()
        while input.readableBytes > 0 {
            output.reserveCapacity(minimumWritableBytes: max(outputStep, input.readableBytes / 2))
            try compressor.deflate(from: &input, to: &output, flush: .no)
        }
        return output
    }

    public func finish() throws -> ByteBuffer {
        var empty = ByteBuffer()
        var output = ByteBuffer()
        while true {
            output.reserveCapacity(minimumWritableBytes: outputStep)
            do {
                try compressor.deflate(from: &empty, to: &output, flush: .finish)
                return output
            } catch let error as CompressNIOError where error == .bufferOverflow {
                continue
            }
        }
    }
}

/// gzip decoder with an output cap.
public final class GzipDecoder: StreamCoder {
    private let decompressor: ZlibDecompressor
    private let outputLimit: Int
    private var produced = 0
    private var sawInput = false

    public init(outputLimit: Int) throws {
        do {
            decompressor = try ZlibDecompressor(algorithm: .gzip)
        } catch {
            throw CodingError.unavailable("gzip: \(error)")
        }
        self.outputLimit = outputLimit
    }

    public func process(_ input: ByteBuffer) throws -> ByteBuffer {
        var input = input
        var output = ByteBuffer()
        sawInput = sawInput || input.readableBytes > 0
        while input.readableBytes > 0 {
            output.reserveCapacity(minimumWritableBytes: outputStep)
            let before = output.readableBytes
            do {
                try decompressor.inflate(from: &input, to: &output)
            } catch let error as CompressNIOError where error == .bufferOverflow {
                // Output full: grow it and go on.
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                // Needs more input than this piece had.
                produced += output.readableBytes - before
                break
            } catch let error as CompressNIOError where error == .corruptData {
                throw CodingError.corrupt("gzip stream is invalid")
            }
            produced += output.readableBytes - before
            if produced > outputLimit { throw CodingError.outputLimitExceeded(limit: outputLimit) }
            // inflate returned without asking for more room: the stream ended or the input is used up.
            if output.writableBytes > 0 { break }
        }
        if produced > outputLimit { throw CodingError.outputLimitExceeded(limit: outputLimit) }
        return output
    }

    /// Asks zlib for the rest with no more input: it reports the end of the stream
    /// (Z_STREAM_END, no error) only if the trailer arrived; otherwise the input was truncated.
    public func finish() throws -> ByteBuffer {
        guard sawInput else { throw CodingError.truncated }
        var empty = ByteBuffer()
        var output = ByteBuffer()
        while true {
            output.reserveCapacity(minimumWritableBytes: outputStep)
            let before = output.readableBytes
            do {
                try decompressor.inflate(from: &empty, to: &output)
                produced += output.readableBytes - before
                if produced > outputLimit { throw CodingError.outputLimitExceeded(limit: outputLimit) }
                return output
            } catch let error as CompressNIOError where error == .bufferOverflow {
                produced += output.readableBytes - before
                if produced > outputLimit { throw CodingError.outputLimitExceeded(limit: outputLimit) }
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                throw CodingError.truncated
            } catch let error as CompressNIOError where error == .corruptData {
                throw CodingError.corrupt("gzip stream is invalid")
            }
        }
    }
}
