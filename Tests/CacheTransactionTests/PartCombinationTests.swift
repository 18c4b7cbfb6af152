import HTTPCaching
import Testing

@testable import CacheStore
@testable import CacheTransaction

/// RFC 9111 §3.4: which stored part a new part joins, and what the joined response is.
@Suite("CacheTransaction: combining a new part with a stored one")
struct PartCombinationTests {
    static func part(_ first: Int64, _ last: Int64, etag: String = "\"v1\"") -> StoredResponse {
        StoredResponse(
            status: 206,
            headers: HeaderFields([
                ("ETag", etag), ("Content-Range", "bytes \(first)-\(last)/1000"),
                ("Content-Length", String(last - first + 1)),
            ]), requestTime: 0, responseTime: 0)
    }

    static func stored(
        _ first: Int64, _ last: Int64, etag: String = "\"v1\"", secondaryKey: String = "", bodyLength: Int? = nil
    ) -> ObjectRecord {
        ObjectRecord(
            id: 7, primaryKey: "http://site.test/p", secondaryKey: secondaryKey,
            response: part(first, last, etag: etag), storedAt: 0,
            bodyLength: bodyLength ?? Int(last - first + 1), chunkSize: 64, chunkCount: 1)
    }

    struct Expected: Sendable, CustomStringConvertible {
        var prefix: ClosedRange<Int64>?
        var suffix: ClosedRange<Int64>?
        var status: Int
        var contentRange: String?
        var contentLength: String
        var description: String { "\(status) \(contentRange ?? "-") prefix \(String(describing: prefix))" }
    }

    @Test(
        "parts that touch join; others do not",
        arguments: [
            // Stored 0-99, new 100-199: the stored bytes go first.
            (
                Int64(100), Int64(199), [stored(0, 99)],
                Expected?(
                    Expected(
                        prefix: 0...99, suffix: nil, status: 206, contentRange: "bytes 0-199/1000", contentLength: "200"
                    ))
            ),
            // Together they are the whole representation: a 200.
            (
                100, 999, [stored(0, 99)],
                Expected(prefix: 0...99, suffix: nil, status: 200, contentRange: nil, contentLength: "1000")
            ),
            // Stored 200-299 after the new 100-199: the stored bytes go after.
            (
                100, 199, [stored(200, 299)],
                Expected(
                    prefix: nil, suffix: 0...99, status: 206, contentRange: "bytes 100-299/1000", contentLength: "200")
            ),
            // Overlapping: only the stored bytes outside the new part are copied.
            (
                50, 149, [stored(0, 99)],
                Expected(
                    prefix: 0...49, suffix: nil, status: 206, contentRange: "bytes 0-149/1000", contentLength: "150")
            ),
            (
                50, 149, [stored(100, 299)],
                Expected(
                    prefix: nil, suffix: 50...199, status: 206, contentRange: "bytes 50-299/1000", contentLength: "250")
            ),
            // A gap between them, another representation, another variant, a short stored body.
            (100, 199, [stored(0, 49)], nil),
            (100, 199, [stored(0, 99, etag: "\"v2\"")], nil),
            (100, 199, [stored(0, 99, secondaryKey: "accept-language=fr")], nil),
            (100, 199, [stored(0, 99, bodyLength: 60)], nil),
            (100, 199, [], nil),
        ] as [(Int64, Int64, [ObjectRecord], Expected?)])
    func table(first: Int64, last: Int64, variants: [ObjectRecord], expected: Expected?) {
        let combination = PartCombination.find(
            Self.part(first, last), declaredLength: Int(last - first + 1), secondaryKey: "", variants: variants)
        guard let expected else {
            #expect(combination == nil)
            return
        }
        guard let combination else {
            Issue.record("no combination, expected \(expected)")
            return
        }
        #expect(combination.prefix.map { $0.lower...$0.upper } == expected.prefix)
        #expect(combination.suffix.map { $0.lower...$0.upper } == expected.suffix)
        #expect(combination.response.status == expected.status)
        #expect(combination.response.headers["Content-Range"] == expected.contentRange)
        #expect(combination.response.headers["Content-Length"] == expected.contentLength)
    }

    @Test("a weak entity tag, or a length that is not the part's, never combines")
    func refusals() {
        #expect(
            PartCombination.find(
                Self.part(100, 199, etag: "W/\"v1\""), declaredLength: 100, secondaryKey: "",
                variants: [Self.stored(0, 99, etag: "W/\"v1\"")]) == nil)
        #expect(
            PartCombination.find(
                Self.part(100, 199), declaredLength: 99, secondaryKey: "", variants: [Self.stored(0, 99)]) == nil)
    }
}
