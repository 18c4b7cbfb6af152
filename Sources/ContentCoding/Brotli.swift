import CBrotli
import NIOCore

// The only file that touches libbrotli. Streaming per the library's contract: the encoder
// takes BROTLI_OPERATION_PROCESS for each piece, then BROTLI_OPERATION_FINISH until
// BrotliEncoderIsFinished; the decoder runs until it reports success, asking for more input
// or more output as it goes. Output buffers grow in steps of `outputStep`.

private let outputStep = 64 * 1024

/// Brotli encoder (RFC 7932) through libbrotlienc.
///
/// Input is held back, up to `wholeInputLimit` bytes, and coded in one FINISH call when the
/// body ends: the library then knows it has the whole input and prepares only the part of its
/// hash tables that input touches, where a streamed body gets the whole tables cleared first
/// (hundreds of KiB at quality 5: most of the cost of coding a small response). A body that
/// outgrows the limit is streamed from there on.
public final class BrotliEncoder: StreamCoder {
    private let state: OpaquePointer
    private let wholeInputLimit: Int
    /// Input held back while the body is still within `wholeInputLimit`; nil once streaming.
    private var held: ByteBuffer? = ByteBuffer()

    /// - Parameters:
    ///   - quality: 0 (fastest) to 11 (smallest).
    ///   - wholeInputLimit: bodies up to this size are coded in one call at the end.
    public init(quality: Int = 5, windowBits: Int = 22, wholeInputLimit: Int = 64 << 10) throws {
        guard let state = BrotliEncoderCreateInstance(nil, nil, nil) else {
            throw CodingError.unavailable("BrotliEncoderCreateInstance failed")
        }
        self.state = state
        self.wholeInputLimit = wholeInputLimit
        BrotliEncoderSetParameter(state, BROTLI_PARAM_QUALITY, UInt32(max(0, min(11, quality))))
        BrotliEncoderSetParameter(state, BROTLI_PARAM_LGWIN, UInt32(max(10, min(24, windowBits))))
    }

    deinit { BrotliEncoderDestroyInstance(state) }

    public func process(_ input: ByteBuffer) throws -> ByteBuffer {
        if var pending = held {
            if pending.readableBytes + input.readableBytes <= wholeInputLimit {
                var input = input
                pending.writeBuffer(&input)
                held = pending
                return ByteBuffer()
            }
            held = nil
            var output = try run(pending, operation: BROTLI_OPERATION_PROCESS)
            var rest = try run(input, operation: BROTLI_OPERATION_PROCESS)
            output.writeBuffer(&rest)
            return output
        }
        return try run(input, operation: BROTLI_OPERATION_PROCESS)
    }

    public func finish() throws -> ByteBuffer {
        let input = held ?? ByteBuffer()
        held = nil
        return try run(input, operation: BROTLI_OPERATION_FINISH)
    }

    private func run(_ input: ByteBuffer, operation: BrotliEncoderOperation) throws -> ByteBuffer {
        var output = ByteBuffer()
        try input.withUnsafeReadableBytes { inputBytes in
            var availableIn = inputBytes.count
            var nextIn = inputBytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
            repeat {
                output.reserveCapacity(minimumWritableBytes: outputStep)
                let written = try output.withUnsafeMutableWritableBytes { outputBytes -> Int in
                    var availableOut = outputBytes.count
                    var nextOut: UnsafeMutablePointer<UInt8>? = outputBytes.baseAddress?.assumingMemoryBound(
                        to: UInt8.self)
                    guard
                        BrotliEncoderCompressStream(
                            state, operation, &availableIn, &nextIn, &availableOut, &nextOut, nil) != 0
                    else { throw CodingError.corrupt("brotli encoder failed") }
                    return outputBytes.count - availableOut
                }
                output.moveWriterIndex(forwardBy: written)
            } while availableIn > 0 || BrotliEncoderHasMoreOutput(state) != 0
                || (operation == BROTLI_OPERATION_FINISH && BrotliEncoderIsFinished(state) == 0)
        }
        return output
    }
}

/// Brotli decoder with an output cap.
public final class BrotliDecoder: StreamCoder {
    private let state: OpaquePointer
    private let outputLimit: Int
    private var produced = 0
    private var finished = false

    public init(outputLimit: Int) throws {
        guard let state = BrotliDecoderCreateInstance(nil, nil, nil) else {
            throw CodingError.unavailable("BrotliDecoderCreateInstance failed")
        }
        self.state = state
        self.outputLimit = outputLimit
    }

    deinit { BrotliDecoderDestroyInstance(state) }

    public func process(_ input: ByteBuffer) throws -> ByteBuffer {
        var output = ByteBuffer()
        guard !finished else { return output }
        try input.withUnsafeReadableBytes { inputBytes in
            var availableIn = inputBytes.count
            var nextIn = inputBytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
            while true {
                output.reserveCapacity(minimumWritableBytes: outputStep)
                var result = BROTLI_DECODER_RESULT_ERROR
                let written = output.withUnsafeMutableWritableBytes { outputBytes -> Int in
                    var availableOut = outputBytes.count
                    var nextOut: UnsafeMutablePointer<UInt8>? = outputBytes.baseAddress?.assumingMemoryBound(
                        to: UInt8.self)
                    result = BrotliDecoderDecompressStream(state, &availableIn, &nextIn, &availableOut, &nextOut, nil)
                    return outputBytes.count - availableOut
                }
                output.moveWriterIndex(forwardBy: written)
                produced += written
                if produced > outputLimit { throw CodingError.outputLimitExceeded(limit: outputLimit) }
                switch result {
                case BROTLI_DECODER_RESULT_SUCCESS:
                    finished = true
                    return
                case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
                    return
                case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
                    continue
                default:
                    throw CodingError.corrupt("brotli stream is invalid")
                }
            }
        }
        return output
    }

    public func finish() throws -> ByteBuffer {
        guard finished else { throw CodingError.truncated }
        return ByteBuffer()
    }
}
