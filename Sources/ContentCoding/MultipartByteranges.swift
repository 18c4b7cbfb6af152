import NIOCore

/// `multipart/byteranges` responses (RFC 9110 §14.6) for requests with several ranges.
public struct MultipartByteranges: Sendable, Equatable {
    public struct Part: Sendable, Equatable {
        /// The part's header section and the CRLF that precedes it (and ends the previous part).
        public var header: ByteBuffer
        /// Inclusive byte positions in the representation.
        public var lower: Int64
        public var upper: Int64
    }

    public var boundary: String
    public var parts: [Part]
    /// The closing delimiter.
    public var trailer: ByteBuffer

    /// The Content-Type of the whole response.
    public var contentType: String { "multipart/byteranges; boundary=\(boundary)" }

    /// The Content-Length of the whole response.
    public var contentLength: Int64 {
        parts.reduce(Int64(trailer.readableBytes)) { $0 + Int64($1.header.readableBytes) + $1.upper - $1.lower + 1 }
    }

    public init(ranges: [(lower: Int64, upper: Int64)], length: Int64, contentType: String?, boundary: String) {
        self.boundary = boundary
        self.parts = ranges.enumerated().map { index, range in
            var header = ByteBuffer()
            if index > 0 { header.writeString("\r\n") }
            header.writeString("--\(boundary)\r\n")
            if let contentType { header.writeString("Content-Type: \(contentType)\r\n") }
            header.writeString("Content-Range: bytes \(range.lower)-\(range.upper)/\(length)\r\n\r\n")
            return Part(header: header, lower: range.lower, upper: range.upper)
        }
        self.trailer = ByteBuffer(string: "\r\n--\(boundary)--\r\n")
    }
}

extension ByteRangeSpec {
    /// Resolution that allows several ranges (RFC 9110 §14.2): the satisfiable ranges in
    /// request order, or the whole representation when there are more than `maxRanges` of
    /// them or any two overlap (a cheap defence against range amplification), or
    /// unsatisfiable.
    public func resolveAll(length: Int64, maxRanges: Int) -> MultiResolution {
        let satisfiable = satisfiableRanges(length: length)
        guard !satisfiable.isEmpty else { return .unsatisfiable }
        if satisfiable.count == 1 { return .single(lower: satisfiable[0].lower, upper: satisfiable[0].upper) }
        guard satisfiable.count <= maxRanges else { return .whole }
        let sorted = satisfiable.sorted { $0.lower < $1.lower }
        for (previous, next) in zip(sorted, sorted.dropFirst()) where next.lower <= previous.upper {
            return .whole
        }
        return .multiple(satisfiable)
    }

    public enum MultiResolution: Sendable {
        case single(lower: Int64, upper: Int64)
        case multiple([(lower: Int64, upper: Int64)])
        case whole
        case unsatisfiable
    }
}
