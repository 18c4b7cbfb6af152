import Foundation
import FuzzDriver
import HTTPCaching

/// A Cache-Control field value (and the same text as a targeted field and as an Expires date):
/// parsing and every decision that reads it must not trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCacheControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let cacheControl = CacheControl(lines: text.split(separator: "\n").map(String.init))
    for name in ["max-age", "s-maxage", "stale-while-revalidate", "stale-if-error", "min-fresh", "max-stale"] {
        _ = cacheControl.seconds(name)
    }
    _ = cacheControl.maxStale
    let headers = HeaderFields([
        ("Cache-Control", text), ("CDN-Cache-Control", text), ("Expires", text), ("Date", text),
        ("Last-Modified", text), ("Age", text), ("Surrogate-Control", text),
    ])
    let response = StoredResponse(status: 200, headers: headers, requestTime: 1000, responseTime: 1001)
    let governing = TargetedCacheControl.governing(headers, targets: ["cdn-cache-control"])
    let lifetime = FreshnessLifetime.of(response, cacheControl: governing)
    _ = Age.correctedInitialAge(of: response)
    _ = Age.current(of: response, now: 2000)
    _ = Reuse.decide(
        age: 10, responseCacheControl: governing, lifetime: lifetime, request: RequestDirectives(headers, honour: true))
    _ = HTTPDate.parse(text)
    _ = SurrogateKeys.tags(in: headers)
    return 0
}

@main
enum FuzzMain {
    static func main() { runFuzzer(fuzzCacheControl) }
}
