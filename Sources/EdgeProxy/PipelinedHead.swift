#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a request ends when its head alone says so: what lets `ExtensionMethodDecoder` find
/// the next request in the same read (a pipelined request, RFC 9112 §9.3.2) and read its
/// method before llhttp does. Pure: bytes in, decision out.
///
/// It answers only what is certain. A head with no `Content-Length` and no
/// `Transfer-Encoding` has no body (RFC 9112 §6.3), so its request ends with its empty line.
/// Anything else is `unknown`, and the decoder then leaves the rest of the read to llhttp, as
/// it does without this scan: a head with a field that frames a body or changes the
/// protocol (`Upgrade`), CONNECT, a line end that is not CR LF. Since the decoder rewrites
/// bytes where this says a request starts, a wrong answer could move a body's bytes; hence
/// the caution, and llhttp still parses and checks everything.
enum PipelinedHead: Equatable {
    /// No empty line yet: the head goes on past these bytes.
    case incomplete
    /// The request ends at this offset (right after its head's empty line).
    case endsAt(Int)
    /// Where the request ends is not certain from its head.
    case unknown

    /// Field names (lower case) whose presence leaves the end of a request to llhttp.
    static let framingFields: [[UInt8]] = ["content-length", "transfer-encoding", "upgrade"].map { Array($0.utf8) }

    /// Scans the head that begins at `start` (after any leading empty lines).
    static func scan(_ bytes: UnsafeRawBufferPointer, from start: Int) -> PipelinedHead {
        var lineStart = start
        // Leading empty lines (llhttp skips them before a request line).
        while lineStart < bytes.count, bytes[lineStart] == UInt8(ascii: "\r") || bytes[lineStart] == UInt8(ascii: "\n")
        {
            lineStart += 1
        }
        guard lineStart < bytes.count, let base = bytes.baseAddress else { return .incomplete }
        guard let emptyLine = firstEmptyLine(bytes, base: base, from: lineStart) else { return .incomplete }
        let end = emptyLine + 4
        // Nothing follows: the read ends with this request, and nothing needs placing.
        if end == bytes.count { return .endsAt(end) }
        if bytes[lineStart...].starts(with: "CONNECT ".utf8) { return .unknown }
        // Every line of the head: CR LF endings only, no field that frames a body.
        var index = lineStart
        var atLineStart = true
        while index < emptyLine + 2 {
            let byte = bytes[index]
            if atLineStart, index > lineStart, startsWithFramingField(bytes, at: index) { return .unknown }
            atLineStart = false
            if byte == UInt8(ascii: "\r") {
                guard bytes[index + 1] == UInt8(ascii: "\n") else { return .unknown }
                index += 2
                atLineStart = true
                continue
            }
            if byte == UInt8(ascii: "\n") { return .unknown }
            index += 1
        }
        return .endsAt(end)
    }

    /// The offset of the first CR LF CR LF at or after `start`, found line end by line end
    /// (`memchr`, vectorised in the C library: a head is a few lines).
    private static func firstEmptyLine(_ bytes: UnsafeRawBufferPointer, base: UnsafeRawPointer, from start: Int) -> Int?
    {
        var from = start
        while from < bytes.count, let found = memchr(base + from, 0x0A, bytes.count - from) {
            let lineFeed = UnsafeRawPointer(found) - base
            // The four bytes ending at this line feed, read at once (the hot path's one request
            // per read takes a handful of these).
            if lineFeed >= start + 3,
                base.loadUnaligned(fromByteOffset: lineFeed - 3, as: UInt32.self).bigEndian == 0x0D0A_0D0A
            {
                return lineFeed - 3
            }
            from = lineFeed + 1
        }
        return nil
    }

    private static func startsWithFramingField(_ bytes: UnsafeRawBufferPointer, at index: Int) -> Bool {
        framingFields.contains { name in
            guard index + name.count <= bytes.count else { return false }
            for offset in 0..<name.count where bytes[index + offset] | 0x20 != name[offset] {
                // `| 0x20` lower-cases letters; '-' (0x2D) is unchanged by it.
                return false
            }
            return true
        }
    }
}
