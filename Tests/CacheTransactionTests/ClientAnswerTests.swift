import HTTPCaching
import Testing

@testable import CacheTransaction

/// The answer to the client from a representation the cache has whole, decided without I/O
/// (RFC 9110 §12.5.3, §13.2.2, §14).
@Suite("CacheTransaction: the client's answer (200, 206, multipart, 304, 412, 416, 406)")
struct ClientAnswerTests {
    static func response(status: Int = 200, etag: String = "\"v1\"") -> StoredResponse {
        StoredResponse(
            status: status,
            headers: HeaderFields([
                ("ETag", etag), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("Date", "Sun, 06 Nov 1994 09:49:37 GMT"),
            ]), requestTime: 0, responseTime: 0)
    }

    @Test(
        "a table of requests against a stored 200 of 100 bytes",
        arguments: [
            ("GET", [(String, String)](), 200, true, Int64?(100), 16, ClientAnswer.whole),
            ("GET", [("If-None-Match", "\"v1\"")], 200, false, 100, 16, .notAcceptable),
            ("GET", [("If-None-Match", "\"v1\"")], 200, true, 100, 16, .notModified),
            ("GET", [("If-None-Match", "W/\"v1\"")], 200, true, 100, 16, .notModified),
            ("HEAD", [("If-None-Match", "*")], 200, true, 100, 16, .notModified),
            ("GET", [("If-None-Match", "\"v2\"")], 200, true, 100, 16, .whole),
            ("GET", [("If-Match", "\"v2\"")], 200, true, 100, 16, .preconditionFailed),
            ("GET", [("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")], 200, true, 100, 16, .notModified),
            (
                "GET", [("If-Unmodified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")], 200, true, 100, 16,
                .preconditionFailed
            ),
            // §13.2.1: preconditions are not evaluated when the answer would not be 2xx.
            ("GET", [("If-None-Match", "*")], 404, true, 100, 16, .whole),
            ("GET", [("If-Match", "\"v2\"")], 301, true, 100, 16, .whole),
            // Range (§14.2): a GET of a 200 with a known length.
            ("GET", [("Range", "bytes=0-9")], 200, true, 100, 16, .range(lower: 0, upper: 9)),
            ("GET", [("Range", "bytes=90-200")], 200, true, 100, 16, .range(lower: 90, upper: 99)),
            ("GET", [("Range", "bytes=-10")], 200, true, 100, 16, .range(lower: 90, upper: 99)),
            ("GET", [("Range", "bytes=0-9,20-29")], 200, true, 100, 16, .multipart([0...9, 20...29])),
            ("GET", [("Range", "bytes=0-9,20-29")], 200, true, 100, 1, .whole),
            ("GET", [("Range", "bytes=0-19,10-29")], 200, true, 100, 16, .whole),
            ("GET", [("Range", "bytes=100-")], 200, true, 100, 16, .rangeNotSatisfiable),
            ("GET", [("Range", "bytes=x-y")], 200, true, 100, 16, .whole),
            ("GET", [("Range", "items=0-9")], 200, true, 100, 16, .whole),
            ("HEAD", [("Range", "bytes=0-9")], 200, true, 100, 16, .whole),
            ("GET", [("Range", "bytes=0-9")], 203, true, 100, 16, .whole),
            ("GET", [("Range", "bytes=0-9")], 200, true, nil, 16, .whole),
            // If-Range (§13.1.5): a strong match keeps the range; otherwise the whole.
            ("GET", [("Range", "bytes=0-9"), ("If-Range", "\"v1\"")], 200, true, 100, 16, .range(lower: 0, upper: 9)),
            ("GET", [("Range", "bytes=0-9"), ("If-Range", "\"v2\"")], 200, true, 100, 16, .whole),
            ("GET", [("Range", "bytes=0-9"), ("If-Range", "W/\"v1\"")], 200, true, 100, 16, .whole),
            // Preconditions come before Range (§13.2.2).
            ("GET", [("Range", "bytes=0-9"), ("If-None-Match", "\"v1\"")], 200, true, 100, 16, .notModified),
            ("GET", [("Range", "bytes=500-"), ("If-Match", "\"v2\"")], 200, true, 100, 16, .preconditionFailed),
        ] as [(String, [(String, String)], Int, Bool, Int64?, Int, ClientAnswer)])
    func table(
        method: String, headers: [(String, String)], status: Int, acceptable: Bool, length: Int64?, maxRanges: Int,
        expected: ClientAnswer
    ) {
        let answer = ClientAnswer.decide(
            method: RequestMethod(token: method), requestHeaders: HeaderFields(headers),
            selected: Self.response(status: status),
            acceptable: acceptable, rangeLength: length, maxRanges: maxRanges)
        #expect(answer == expected)
    }

    @Test("If-Range with a weak entity tag stored never allows a range (strong comparison)")
    func weakStored() {
        let answer = ClientAnswer.decide(
            method: .get, requestHeaders: HeaderFields([("Range", "bytes=0-9"), ("If-Range", "W/\"v1\"")]),
            selected: Self.response(etag: "W/\"v1\""), rangeLength: 100, maxRanges: 16)
        #expect(answer == .whole)
    }
}
