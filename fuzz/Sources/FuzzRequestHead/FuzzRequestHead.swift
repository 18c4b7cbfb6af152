import EdgeProxy
import Foundation
import FuzzDriver
import HTTPCaching

/// A request head as text: "METHOD URI VERSION" then "name: value" lines. Whatever the bytes,
/// RequestValidation must answer (nil or a status from 400 to 431) without trapping.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestHead(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
        $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
    }
    guard !lines.isEmpty else { return 0 }
    let requestLine = lines.removeFirst().split(separator: " ", maxSplits: 2).map(String.init)
    let method = requestLine.first ?? ""
    let uri = requestLine.count > 1 ? requestLine[1] : ""
    let minor = requestLine.count > 2 && requestLine[2].hasSuffix("1.0") ? 0 : 1
    var headers = HeaderFields()
    for line in lines {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers.add(String(line[..<colon]), String(String(line[line.index(after: colon)...]).trimmingOWS()))
    }
    let limits = RequestValidation.Limits(
        maxURILength: 8192, maxHeaderBytes: 32768, maxHeaders: 100, maxRequestBodySize: 1 << 20)
    if let rejection = RequestValidation.check(
        method: method, uri: uri, versionMajor: 1, versionMinor: minor, headers: headers, limits: limits)
    {
        precondition((400...505).contains(rejection.status), "status \(rejection.status)")
    }
    _ = HopByHop.stripped(headers)
    _ = RequestDirectives(headers, honour: true)
    return 0
}

@main
enum FuzzMain {
    static func main() { runFuzzer(fuzzRequestHead) }
}
