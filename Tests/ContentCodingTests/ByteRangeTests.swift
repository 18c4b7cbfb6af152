import ContentCoding
import Testing

/// RFC 9110 §14: Range parsing and resolution.
@Suite("RFC 9110 §14: ranges")
struct ByteRangeTests {
    @Test(
        "§14.1.2 resolution against a 10 000-byte representation",
        arguments: [
            ("bytes=0-99", ByteRangeSpec.Resolution.single(lower: 0, upper: 99)),
            ("bytes=9990-", .single(lower: 9990, upper: 9999)),
            ("bytes=-500", .single(lower: 9500, upper: 9999)),
            ("bytes=-20000", .single(lower: 0, upper: 9999)),
            ("bytes=9000-20000", .single(lower: 9000, upper: 9999)),
            ("bytes=10000-", .unsatisfiable),
            ("bytes=-0", .unsatisfiable),
            ("bytes=0-1, 5-6", .whole),
            ("BYTES=0-0", .single(lower: 0, upper: 0)),
            ("bytes=20000-, 0-0", .single(lower: 0, upper: 0)),
        ])
    func resolve(value: String, expected: ByteRangeSpec.Resolution) throws {
        let spec = try #require(ByteRangeSpec(value))
        #expect(spec.resolve(length: 10_000) == expected)
    }

    @Test(
        "§14.2 syntactically invalid ranges are ignored",
        arguments: ["bytes=5-1", "bytes=a-b", "items=0-1", "bytes=", "bytes", "0-1", "bytes=1-2-3", "bytes=--1"])
    func invalid(value: String) {
        #expect(ByteRangeSpec(value) == nil)
    }
}
