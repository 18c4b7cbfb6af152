import HTTPCaching
import Testing

/// RFC 9111 §1.2.2, §5.2 and RFC 9110 §5.3, §5.6.7: reading the fields.
@Suite("RFC 9111 §1.2.2 / §5.2: parsing")
struct ParsingTests {
    @Test(
        "§1.2.2 delta-seconds",
        arguments: [
            ("0", Int64?.some(0)), ("60", 60), ("2147483648", 2_147_483_648),
            ("99999999999999999999", 2_147_483_648), ("-1", nil), ("1.5", nil), ("", nil), ("abc", nil), (" 5", nil),
        ])
    func deltaSeconds(text: String, expected: Int64?) {
        #expect(DeltaSeconds.parse(text) == expected)
    }

    @Test(
        "§5.2 max-age readings",
        arguments: [
            ("max-age=60", CacheControl.Seconds.value(60)),
            ("MAX-AGE=60", .value(60)),
            ("max-age = 60", .invalid),
            ("max-age =60", .invalid),
            ("max-age= 60", .invalid),
            ("max-age=\"60\"", .value(60)),
            ("max-age=60s", .invalid),
            ("max-age=0x10", .invalid),
            ("max-age=", .invalid),
            ("max-age", .invalid),
            ("max-age=-5", .invalid),
            ("max-age=1.5", .invalid),
            ("max-age=10, max-age=3600", .invalid),
            ("max-age=10, max-age=10", .value(10)),
            ("max-age=99999999999999999999", .value(2_147_483_648)),
            ("public", .absent),
            ("", .absent),
        ])
    func maxAge(line: String, expected: CacheControl.Seconds) {
        #expect(CacheControl(lines: [line]).seconds("max-age") == expected)
    }

    @Test("§5.2 several Cache-Control lines combine into one list")
    func combinesLines() {
        let cc = CacheControl(lines: ["public", "max-age=5, Must-Revalidate"])
        #expect(cc.has("public"))
        #expect(cc.has("must-revalidate"))
        #expect(cc.seconds("max-age") == .value(5))
    }

    @Test("§5.2 unknown directives are ignored, quoted commas do not split")
    func unknownAndQuoted() {
        let cc = CacheControl(lines: ["foo=\"a, b\", bar, max-age=7"])
        #expect(cc.argument("foo") == "a, b")
        #expect(cc.has("bar"))
        #expect(cc.seconds("max-age") == .value(7))
    }

    @Test("§5.2.1.2 max-stale with and without argument")
    func maxStale() {
        #expect(CacheControl(lines: ["max-stale"]).maxStale == .unlimited)
        #expect(CacheControl(lines: ["max-stale=30"]).maxStale == .seconds(30))
        #expect(CacheControl(lines: ["max-stale=x"]).maxStale == .invalid)
        #expect(CacheControl(lines: ["max-age=1"]).maxStale == .absent)
    }

    @Test(
        "RFC 9110 §5.6.7 the three date formats",
        arguments: [
            "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
        ])
    func dateFormats(text: String) {
        #expect(HTTPDate.parse(text) == 784_111_777)
    }

    @Test(
        "RFC 9110 §5.6.7 letters are matched case-insensitively",
        arguments: ["SUN, 06 NOV 1994 08:49:37 GMT", "Sun, 06 nov 1994 08:49:37 gMT"])
    func dateCase(text: String) {
        #expect(HTTPDate.parse(text) == 784_111_777)
    }

    @Test("RFC 9110 §5.6.7 far-future and two-digit years")
    func dateYears() {
        #expect(HTTPDate.parse("Tue, 19 Jan 2038 03:14:08 GMT") == 2_147_483_648)
        #expect(HTTPDate.parse("Thursday, 18-Aug-50 02:01:18 GMT") == HTTPDate.parse("Thu, 18 Aug 2050 02:01:18 GMT"))
        #expect(HTTPDate.parse("Thu Aug  8 02:01:18 2050") == HTTPDate.parse("Thu, 08 Aug 2050 02:01:18 GMT"))
    }

    @Test(
        "RFC 9110 §5.6.7 invalid dates are nil",
        arguments: [
            "0", "", "-1", "Sun, 06 Nov 1994 08:49:37", "Sun, 32 Nov 1994 08:49:37 GMT", "yesterday",
            "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT", "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 2050 02:01:18 AEST", "Thu, 18 Aug 50 02:01:18 GMT", "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT", "Thu, 18-Aug-2050 02:01:18 GMT", "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT", "Sun Nov 6 08:49:37 1994",
        ])
    func invalidDates(text: String) {
        #expect(HTTPDate.parse(text) == nil)
    }

    @Test("RFC 9110 §5.6.7 formatting round-trips as IMF-fixdate")
    func formatRoundTrip() {
        #expect(HTTPDate.format(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        for seconds: Int64 in [0, 951_782_400, 1_700_000_000, 4_102_444_799] {
            #expect(HTTPDate.parse(HTTPDate.format(seconds)) == seconds)
        }
    }

    @Test("RFC 9110 §5.3 list members across lines, quoted commas kept")
    func listMembers() {
        let headers = HeaderFields([("Vary", "Accept, accept-language"), ("vary", " Cookie ,, ")])
        #expect(headers.listMembers("VARY") == ["Accept", "accept-language", "Cookie"])
        #expect(HeaderFields.splitList("\"a,b\", c") == ["\"a,b\"", "c"])
    }

    @Test(
        "RFC 9110 §5.6.1 lists split on the bytes: quotes, escapes, OWS, empty members, non-ASCII",
        arguments: [
            ("", []),
            (" , ,\t,", []),
            ("a", ["a"]),
            ("\ta ,\tb\t", ["a", "b"]),
            ("max-age=60, no-cache=\"Set-Cookie, Vary\"", ["max-age=60", "no-cache=\"Set-Cookie, Vary\""]),
            ("x=\"a\\\",b\", y", ["x=\"a\\\",b\"", "y"]),
            ("caf\u{e9}, \u{1F600} ,z", ["caf\u{e9}", "\u{1F600}", "z"]),
            ("a,,b", ["a", "b"]),
        ] as [(String, [String])])
    func splitListTable(line: String, members: [String]) {
        #expect(HeaderFields.splitList(line) == members)
    }

    @Test("OWS is trimmed from both ends only", arguments: [("  a b\t", "a b"), ("\t", ""), ("x", "x"), ("", "")])
    func trimming(text: String, trimmed: String) {
        #expect(String(text.trimmingOWS()) == trimmed)
        #expect(String(Substring(text).trimmingOWS()) == trimmed)
    }

    @Test("RFC 9111 §5.1 Age: invalid values are ignored")
    func ageField() {
        #expect(response([("Age", "30")]).ageValue == 30)
        #expect(response([("Age", "-1")]).ageValue == nil)
        #expect(response([("Age", "abc")]).ageValue == nil)
        #expect(response([("Age", "99999999999999")]).ageValue == 2_147_483_648)
        #expect(response([("Age", "7200.0")]).ageValue == nil)
        #expect(response([("Age", "60;foo=bar")]).ageValue == nil)
        #expect(response([("Age", "60 s")]).ageValue == nil)
        // First member of the first line (cache-tests age-parse-suffix / -prefix / -twoline).
        #expect(response([("Age", "7200, 0")]).ageValue == 7200)
        #expect(response([("Age", "0"), ("Age", "7200")]).ageValue == 0)
    }

    @Test("RFC 9110 §8.8.3 entity tags and comparison")
    func entityTags() throws {
        let strong = try #require(EntityTag(parsing: "\"abc\""))
        let weak = try #require(EntityTag(parsing: "W/\"abc\""))
        #expect(!strong.isWeak && weak.isWeak)
        #expect(strong.strongMatches(strong))
        #expect(!strong.strongMatches(weak))
        #expect(strong.weakMatches(weak))
        #expect(EntityTag(parsing: "abc") == nil)
        #expect(EntityTagCondition(lines: ["*"]) == .any)
        #expect(EntityTagCondition(lines: ["\"a\", W/\"b\""]) == .tags([strong.with("a"), weak.with("b")]))
    }
}

extension EntityTag {
    func with(_ opaque: String) -> EntityTag { EntityTag(opaque: opaque, isWeak: isWeak) }
}
