#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a request ends when its head alone says so: what lets `ExtensionMethodDecoder` find
/// the next request in the same read (a pipelined request, RFC 9112 §9.3.2) and read its
/// method before llhttp does. Pure: bytes in, decision out.
///
/// It answers only what is certain (RFC 9112 §6.3): a head with no `Content-Length` and no
/// `Transfer-Encoding` has no body, so its request ends with its empty line; a head with one
/// `Content-Length` of plain digits (and no `Transfer-Encoding`) has that many bytes of body.
/// Anything else is `unknown`, and the decoder then leaves the rest of the read to llhttp, as
/// it does without this scan: a chunked body, a second `Content-Length` or one llhttp might
/// read otherwise, `Upgrade`, CONNECT, a line end that is not CR LF. Since the decoder
/// rewrites bytes where this says a request starts, a wrong answer could move a body's
/// bytes; hence the caution, and llhttp still parses and checks everything (it refuses what
/// this could misread: two lengths, a length with a chunked coding).
enum PipelinedHead: Equatable {
    /// No empty line yet: the head goes on past these bytes.
    case incomplete
    /// The head ends exactly where the bytes do: nothing in them follows it to place.
    case headEndsBytes
    /// The request ends at this offset (after its head's empty line and its body); it may lie
    /// past the bytes, when the body goes on in later reads.
    case endsAt(Int)
    /// Where the request ends is not certain from its head.
    case unknown

    /// Field names (lower case) whose presence leaves the end of a request to llhttp.
    static let framingFields: [[UInt8]] = ["transfer-encoding", "upgrade"].map { Array($0.utf8) }
    static let contentLength: [UInt8] = Array("content-length".utf8)

    /// Scans the head that begins at `start` (after any leading empty lines).
    static func scan(_ bytes: UnsafeRawBufferPointer, from start: Int) -> PipelinedHead {
        let lineStart = RequestLineStart.skippingEmptyLines(bytes, from: start)
        guard lineStart < bytes.count, let base = bytes.baseAddress else { return .incomplete }
        guard let emptyLine = firstEmptyLine(bytes, base: base, from: lineStart) else { return .incomplete }
        let end = emptyLine + 4
        // Nothing follows: the read ends with this head, and nothing needs placing.
        if end == bytes.count { return .headEndsBytes }
        if bytes[lineStart...].starts(with: "CONNECT ".utf8) { return .unknown }
        // Every line of the head: CR LF endings only, no field that frames a body but one
        // plain Content-Length.
        var length: Int?
        var index = lineStart
        var atLineStart = true
        while index < emptyLine + 2 {
            let byte = bytes[index]
            if atLineStart, index > lineStart {
                if startsWith(bytes, at: index, contentLength) {
                    guard length == nil, let value = contentLengthValue(bytes, at: index + contentLength.count) else {
                        return .unknown
                    }
                    length = value
                } else if framingFields.contains(where: { startsWith(bytes, at: index, $0) }) {
                    return .unknown
                }
            }
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
        return .endsAt(end + (length ?? 0))
    }

    /// A Content-Length field's value from just after its name: `:`, optional spaces or tabs,
    /// 1 to 15 digits, optional spaces or tabs, CR. Anything else is nil (left to llhttp).
    private static func contentLengthValue(_ bytes: UnsafeRawBufferPointer, at start: Int) -> Int? {
        var index = start
        guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
        index += 1
        while index < bytes.count, bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") {
            index += 1
        }
        var value = 0
        var digits = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
            digits += 1
            guard digits <= 15 else { return nil }
            index += 1
        }
        guard digits > 0 else { return nil }
        while index < bytes.count, bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") {
            index += 1
        }
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\r") else { return nil }
        return value
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

    /// The bytes at `index` start with `name` (lower case), letters compared without case.
    private static func startsWith(_ bytes: UnsafeRawBufferPointer, at index: Int, _ name: [UInt8]) -> Bool {
        guard index + name.count <= bytes.count else { return false }
        // `| 0x20` lower-cases letters and leaves '-' as it is; a byte it maps onto a letter
        // of the name by mistake only makes the scan more cautious.
        for offset in 0..<name.count where bytes[index + offset] | 0x20 != name[offset] { return false }
        return true
    }
}
