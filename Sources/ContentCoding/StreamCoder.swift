import NIOCore

/// A streaming content coder (RFC 9110 §8.4.1): bytes in, coded or decoded bytes out, one
/// piece at a time, so no body is ever held whole in memory. One coder serves one stream; it
/// is not thread-safe.
public protocol StreamCoder: AnyObject {
    /// Feeds the next piece of input; returns the output produced so far (possibly empty).
    func process(_ input: ByteBuffer) throws -> ByteBuffer
    /// Ends the stream; returns the last output.
    func finish() throws -> ByteBuffer
}

/// Why coding failed.
public enum CodingError: Error, Equatable, CustomStringConvertible {
    /// Decoding produced more than the configured cap (a decompression bomb, or simply too big).
    case outputLimitExceeded(limit: Int)
    /// The coded input is not valid for its coding.
    case corrupt(String)
    /// The coded input ended before the coded stream did.
    case truncated
    /// The coder could not be created or failed internally.
    case unavailable(String)

    public var description: String {
        switch self {
        case .outputLimitExceeded(let limit): return "decoded output exceeds \(limit) bytes"
        case .corrupt(let detail): return "corrupt coded data: \(detail)"
        case .truncated: return "coded data ended early"
        case .unavailable(let detail): return "coder unavailable: \(detail)"
        }
    }
}

extension StreamCoder {
    /// Codes a whole buffer at once (for tests and small bodies).
    public func code(_ input: ByteBuffer) throws -> ByteBuffer {
        var output = try process(input)
        var last = try finish()
        output.writeBuffer(&last)
        return output
    }
}

/// The coders this cache can produce and undo.
public enum Coders {
    /// An encoder for `coding` (`br` or `gzip`); nil for identity.
    public static func encoder(for coding: String, brotliQuality: Int = 5, gzipLevel: Int = 6) throws -> StreamCoder? {
        switch coding {
        case "br": return try BrotliEncoder(quality: brotliQuality)
        case "gzip", "x-gzip": return try GzipEncoder(level: gzipLevel)
        default: return nil
        }
    }

    /// A decoder for `coding` whose output is capped at `outputLimit` bytes; nil when the coding
    /// is not one this cache can decode.
    public static func decoder(for coding: String, outputLimit: Int) throws -> StreamCoder? {
        switch coding {
        case "br": return try BrotliDecoder(outputLimit: outputLimit)
        case "gzip", "x-gzip": return try GzipDecoder(outputLimit: outputLimit)
        default: return nil
        }
    }
}
