import HTTPCaching
import Testing

/// RFC 9111 §4.2: freshness lifetime and age.
@Suite("RFC 9111 §4.2: freshness")
struct FreshnessTests {
    static let date = HTTPDate.format(1_000_000)

    @Test(
        "§4.2.1 lifetime: first rule that applies",
        arguments: [
            ([("Cache-Control", "s-maxage=10, max-age=100")], Int64(10), FreshnessLifetime.Source.sMaxAge),
            ([("Cache-Control", "max-age=100"), ("Expires", HTTPDate.format(1_000_500))], 100, .maxAge),
            ([("Expires", HTTPDate.format(1_000_500))], 500, .expires),
            ([("Expires", "0")], 0, .invalid),
            ([("Expires", "yesterday")], 0, .invalid),
            ([("Expires", HTTPDate.format(900_000))], 0, .expires),
            ([("Cache-Control", "max-age=\"100\"")], 100, .maxAge),
            ([("Cache-Control", "max-age = 100")], 0, .invalid),
            ([("Cache-Control", "max-age=100s")], 0, .invalid),
            ([("Cache-Control", "max-age=10, max-age=3600")], 0, .invalid),
            ([("Cache-Control", "s-maxage=-1, max-age=100")], 0, .invalid),
            ([("Cache-Control", "max-age=99999999999999999999")], 2_147_483_648, .maxAge),
            ([("Cache-Control", "public")], 0, .none),
        ])
    func lifetime(fields: [(String, String)], seconds: Int64, source: FreshnessLifetime.Source) {
        let stored = response(200, [("Date", Self.date)] + fields)
        let lifetime = FreshnessLifetime.of(stored, cacheControl: stored.cacheControl)
        #expect(lifetime.seconds == seconds)
        #expect(lifetime.source == source)
    }

    @Test("§4.2.1 Expires is relative to Date, not to the cache's clock")
    func expiresRelativeToDate() {
        let stored = response(200, [("Date", HTTPDate.format(500)), ("Expires", HTTPDate.format(800))])
        #expect(FreshnessLifetime.of(stored, cacheControl: stored.cacheControl).seconds == 300)
    }

    @Test(
        "§4.2.2 heuristic: 10% of Date - Last-Modified, heuristically cacheable statuses only",
        arguments: [(200, Int64(1000)), (404, 1000), (301, 1000), (302, 0), (500, 0)])
    func heuristic(status: Int, expected: Int64) {
        let stored = response(status, [("Date", Self.date), ("Last-Modified", HTTPDate.format(990_000))])
        #expect(FreshnessLifetime.of(stored, cacheControl: stored.cacheControl).seconds == expected)
    }

    @Test("§4.2.2 heuristic lifetime is capped below 24 hours")
    func heuristicCap() {
        let stored = response(200, [("Date", Self.date), ("Last-Modified", HTTPDate.format(0))])
        #expect(FreshnessLifetime.of(stored, cacheControl: stored.cacheControl).seconds == 86_399)
        let configured = FreshnessConfiguration(heuristicCap: 600)
        #expect(
            FreshnessLifetime.of(stored, cacheControl: stored.cacheControl, configuration: configured).seconds == 600)
        #expect(FreshnessConfiguration(heuristicCap: 999_999).heuristicCap == 86_399)
    }

    @Test("§4.2.3 age: apparent age from Date")
    func apparentAge() {
        let stored = response(200, [("Date", HTTPDate.format(999_990))])
        #expect(Age.current(of: stored, now: 1_000_000) == 10)
        #expect(Age.current(of: stored, now: 1_000_005) == 15)
    }

    @Test("§4.2.3 age: corrected age value adds the response delay")
    func correctedAge() {
        var stored = response(200, [("Date", HTTPDate.format(1_000_000)), ("Age", "20")])
        stored.requestTime = 999_998
        #expect(Age.current(of: stored, now: 1_000_000) == 22)
    }

    @Test("§4.2.3 age: a Date in the future does not make age negative")
    func futureDate() {
        let stored = response(200, [("Date", HTTPDate.format(1_000_100))])
        #expect(Age.current(of: stored, now: 1_000_000) == 0)
        #expect(Age.headerValue(-3) == "0")
        #expect(Age.headerValue(12.9) == "12")
    }

    @Test("§4.2.3 a very large Age makes the response stale")
    func hugeAge() {
        let stored = response(200, [("Date", Self.date), ("Cache-Control", "max-age=3600"), ("Age", "99999999")])
        let decision = Reuse.decide(
            stored: stored, responseCacheControl: stored.cacheControl,
            lifetime: FreshnessLifetime.of(stored, cacheControl: stored.cacheControl),
            request: RequestDirectives(HeaderFields()), now: 1_000_000)
        #expect(decision == .mustValidate(reason: .stale))
    }
}
