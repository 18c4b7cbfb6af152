import ContentCoding
import Foundation
import FuzzDriver
import HTTPCaching

/// An Accept-Encoding field value: parsing, weights and the choice among stored codings must
/// not trap, and the choice is always one of the codings offered.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAcceptEncoding(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let accept = AcceptEncoding(lines: text.split(separator: "\n").map(String.init))
    for coding in [ContentCodingName.br, .gzip, .identity] { _ = accept.quality(coding) }
    for available in [Set<ContentCodingName>([.identity]), [.identity, .br, .gzip], [.gzip]] {
        _ = CodingNegotiation.choose(accept, available: available)
    }
    _ = Vary(fieldNames: ["accept-encoding"]).secondaryKey(for: HeaderFields([("Accept-Encoding", text)]))
    _ = CompressibleTypes().contains(contentType: text)
    return 0
}

@main
enum FuzzMain {
    static func main() { runFuzzer(fuzzAcceptEncoding) }
}
