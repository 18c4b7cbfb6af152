/// Where a request line starts in a read: after any empty lines (CR LF or bare LF), which a
/// server ignores before a request line (RFC 9112 §2.2) and llhttp skips. One rule for the
/// decoder's placing of pipelined heads, its extension methods and the HTTP/0.9 check.
/// (`MethodToken.classify` counts them too: it bounds how many it waits through.)
enum RequestLineStart {
    /// The index of the first byte at or after `start` that is neither CR nor LF.
    static func skippingEmptyLines(_ bytes: UnsafeRawBufferPointer, from start: Int = 0) -> Int {
        var index = start
        while index < bytes.count, bytes[index] == UInt8(ascii: "\r") || bytes[index] == UInt8(ascii: "\n") {
            index += 1
        }
        return index
    }
}
