import ContentCoding
import Foundation
import FuzzDriver
import HTTPCaching

/// A Range field value and a representation length (the first 8 bytes, the rest the text):
/// every resolution must stay inside the representation, and Content-Range parsing must not trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRange(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var length: Int64 = 0
    for byte in bytes.prefix(8) { length = length << 8 | Int64(byte) }
    length = length & 0xFFFF_FFFF_FFFF  // up to 256 TiB
    let text = String(decoding: bytes.dropFirst(8), as: UTF8.self)
    if let spec = ByteRangeSpec(text) {
        switch spec.resolve(length: length) {
        case .single(let first, let last): precondition(first >= 0 && first <= last && last < length)
        default: break
        }
        switch spec.resolveAll(length: length, maxRanges: 16) {
        case .single(let first, let last): precondition(first >= 0 && first <= last && last < length)
        case .multiple(let ranges):
            precondition(ranges.count <= 16)
            for range in ranges { precondition(range.lower >= 0 && range.lower <= range.upper && range.upper < length) }
        default: break
        }
    }
    if let range = ContentRange(parsing: text) {
        precondition(range.first <= range.last)
        _ = range.received(Int64(size))
    }
    return 0
}

@main
enum FuzzMain {
    static func main() { runFuzzer(fuzzRange) }
}
