import HTTPCaching
import Testing

/// RFC 9111 §2, §4.1, §4.4 and RFC 9211: keys, Vary, invalidation, Cache-Status.
@Suite("RFC 9111 §2 / §4.1 / §4.4: keys, Vary, invalidation")
struct KeyAndVaryTests {
    @Test(
        "§2 the authority is normalised",
        arguments: [
            ("HTTP", "Example.COM:80", "/a", "http://example.com/a"),
            ("https", "example.com:443", "/a?b=1", "https://example.com/a?b=1"),
            ("http", "example.com:8080", "", "http://example.com:8080/"),
            ("http", "user@example.com", "/x", "http://example.com/x"),
        ])
    func authority(scheme: String, authority: String, path: String, expected: String) {
        #expect(CacheKey(scheme: scheme, authority: authority, pathAndQuery: path).description == expected)
    }

    @Test("§2 the query is kept as sent")
    func query() {
        let a = CacheKey(scheme: "http", authority: "h", pathAndQuery: "/p?b=2&a=1")
        let b = CacheKey(scheme: "http", authority: "h", pathAndQuery: "/p?a=1&b=2")
        #expect(a != b)
    }

    @Test("§4.1 secondary keys: combined lines and whitespace normalised, absent differs from empty")
    func secondaryKey() {
        let vary = Vary(HeaderFields([("Vary", "Accept-Language, X-Foo")]))
        let one = vary.secondaryKey(for: HeaderFields([("accept-language", "en,  fr"), ("X-Foo", "1")]))
        let two = vary.secondaryKey(
            for: HeaderFields([("Accept-Language", "en"), ("Accept-Language", "fr"), ("X-Foo", "1")]))
        #expect(one == two)
        let absent = vary.secondaryKey(for: HeaderFields([("Accept-Language", "en, fr")]))
        let empty = vary.secondaryKey(for: HeaderFields([("Accept-Language", "en, fr"), ("X-Foo", "")]))
        #expect(absent != empty)
        #expect(one != absent)
    }

    @Test("§4.1 Vary names are case-insensitive; * never matches")
    func varyParsing() {
        let vary = Vary(HeaderFields([("Vary", "ACCEPT, accept"), ("Vary", "*")]))
        #expect(vary.fieldNames == ["accept"])
        #expect(vary.isWildcard)
    }

    @Test(
        "§4.1 Accept-Encoding normalised to the coding the cache would serve",
        arguments: [
            ("gzip, deflate, br", ContentCodingName.br),
            ("gzip;q=1.0, br;q=0.5", .gzip),
            ("gzip", .gzip),
            ("x-gzip", .gzip),
            ("deflate", .identity),
            ("*", .br),
            ("br;q=0, *;q=0.5", .gzip),
            ("identity", .identity),
            ("", .identity),
            ("gzip;q=0", .identity),
        ])
    func acceptEncoding(value: String, expected: ContentCodingName) {
        #expect(AcceptEncoding(lines: [value]).preferredStorageCoding == expected)
    }

    @Test("RFC 9110 §12.5.3 identity is acceptable unless excluded")
    func identity() {
        #expect(AcceptEncoding(lines: ["gzip"]).quality(.identity) == 1000)
        #expect(AcceptEncoding(lines: ["gzip, identity;q=0"]).quality(.identity) == 0)
        #expect(AcceptEncoding(lines: ["*;q=0"]).quality(.identity) == 0)
        #expect(AcceptEncoding(lines: []).quality(.gzip) == 1000)
    }

    @Test(
        "§4.4 unsafe methods invalidate the target and same-host Location / Content-Location",
        arguments: [
            ("POST", 200, [("Location", "/other")], ["http://h/p", "http://h/other"]),
            ("PUT", 201, [("Content-Location", "http://h/c")], ["http://h/p", "http://h/c"]),
            ("DELETE", 204, [("Location", "http://elsewhere/x")], ["http://h/p"]),
            ("POST", 500, [], []),
            ("GET", 200, [], []),
            ("FOO", 200, [], ["http://h/p"]),
            ("POST", 303, [("Location", "rel")], ["http://h/p", "http://h/rel"]),
        ])
    func invalidation(method: String, status: Int, fields: [(String, String)], expected: [String]) {
        let target = CacheKey(scheme: "http", authority: "h", pathAndQuery: "/p")
        let keys = Invalidation.keys(
            method: method, target: target, status: status, responseHeaders: HeaderFields(fields))
        #expect(keys.map(\.description) == expected)
    }

    @Test("RFC 9211 §2 Cache-Status serialisation")
    func cacheStatus() {
        #expect(CacheStatus.hit(ttl: 42).headerValue == "outpost; hit; ttl=42")
        let miss = CacheStatus(forward: .uriMiss, forwardStatus: 200, stored: true, ttl: 60)
        #expect(miss.headerValue == "outpost; fwd=uri-miss; fwd-status=200; stored; ttl=60")
        #expect(
            CacheStatus(forward: .bypass, detail: "a \"b\"").headerValue
                == "outpost; fwd=bypass; detail=\"a \\\"b\\\"\"")
    }

    @Test(
        "Cache-Status details: typed where decided, written as text, read back as the same case",
        arguments: [
            (CacheStatus.Detail.mustValidate(.stale), "stale", false),
            (.mustValidate(.softPurge), "soft purge", false),
            (.mustValidate(.requestNoCache), "request no-cache", false),
            (.staleAllowed(.maxStale), "max-stale", true),
            (.staleWhileRevalidate, "stale-while-revalidate", true),
            (.staleIfError, "stale-if-error", true),
            (.requestNoStore, "no-store", false),
            (.other("status not understood"), "status not understood", false),
        ])
    func cacheStatusDetail(detail: CacheStatus.Detail, text: String, servedStale: Bool) {
        #expect(detail.description == text)
        #expect(CacheStatus.Detail(parsing: text) == detail)
        #expect(detail.servedStale == servedStale)
    }

    @Test(
        "FreshnessLifetime.remaining: seconds left at an age, rounded down (one rule for every ttl)",
        arguments: [(Int64(60), 0.0, Int64(60)), (60, 0.4, 59), (60, 59.9, 0), (60, 60, 0), (60, 60.5, -1), (0, 3, -3)])
    func remaining(lifetime: Int64, age: Double, expected: Int64) {
        #expect(FreshnessLifetime(seconds: lifetime, source: .maxAge).remaining(atAge: age) == expected)
    }
}

@Suite("Surrogate keys")
struct SurrogateKeyTests {
    @Test(
        "Surrogate-Key is space-separated, Cache-Tag comma-separated; duplicates, empty and invalid tags are dropped",
        arguments: [
            ([("Surrogate-Key", "a b  c")], ["a", "b", "c"]),
            ([("Cache-Tag", "a, b,,c ")], ["a", "b", "c"]),
            ([("Surrogate-Key", "a b"), ("Cache-Tag", "b, c"), ("Surrogate-Key", "d")], ["a", "b", "d", "c"]),
            ([("Surrogate-Key", "Case case")], ["Case", "case"]),
            ([("Surrogate-Key", String(repeating: "x", count: 201) + " ok")], ["ok"]),
            ([("Cache-Tag", "caf\u{e9}, ok")], ["ok"]),
            ([(String, String)](), []),
        ])
    func tags(fields: [(String, String)], expected: [String]) {
        #expect(SurrogateKeys.tags(in: HeaderFields(fields)) == expected)
    }
}

@Suite("Vary: Accept-Language as a set")
struct AcceptLanguageVaryTests {
    @Test(
        "§4.1 Accept-Language values listing the same members select the same variant",
        arguments: [
            (["en, de"], ["eN,De"], true),
            (["en, de"], ["de, en"], true),
            (["en, de"], ["de", "en"], true),
            (["en;q=0.8, de"], ["de,EN; q=0.8"], true),
            (["en, de"], ["en, de, de"], true),
            (["en, , de"], ["de,en"], true),
            (["en"], ["en-US"], false),
            (["en;q=0.8, de"], ["en, de;q=0.8"], false),
            (["en"], [], false),
            ([""], [], false),
        ])
    func sameSet(first: [String], second: [String], same: Bool) {
        let vary = Vary(fieldNames: ["accept-language"])
        let key = { (lines: [String]) in vary.secondaryKey(for: HeaderFields(lines.map { ("Accept-Language", $0) })) }
        #expect((key(first) == key(second)) == same)
    }

    @Test("other list fields keep their order and case")
    func othersKeepOrder() {
        let vary = Vary(fieldNames: ["x-list"])
        #expect(
            vary.secondaryKey(for: HeaderFields([("X-List", "a, b")]))
                != vary.secondaryKey(for: HeaderFields([("X-List", "b, a")])))
    }
}

@Suite("Vary: reading a secondary key back")
struct SecondaryKeyReadingTests {
    @Test("the values a secondary key was made from, absent fields as nil")
    func roundTrip() {
        let vary = Vary(fieldNames: ["accept-language", "x-device", "accept-encoding"])
        let key = vary.secondaryKey(for: HeaderFields([("Accept-Language", "fr,  en"), ("Accept-Encoding", "gzip")]))
        let values = Vary.selectingValues(fromSecondaryKey: key)
        #expect(values.map(\.name) == ["accept-language", "x-device", "accept-encoding"])
        #expect(values.map(\.value) == ["en,fr", nil, "gzip"])
        #expect(Vary.selectingValues(fromSecondaryKey: "").isEmpty)
    }

    @Test(
        "§2 a key for another path on the same authority is the key built from scratch",
        arguments: [
            ("Example.COM:80", "/a?b=1"), ("example.com:8080", ""), ("user@Example.com.", "/x"),
            ("[::1]:80", "/v6"),
        ])
    func replacingPath(authority: String, path: String) {
        let base = CacheKey(scheme: "http", authority: authority, pathAndQuery: "/")
        #expect(base.replacingPathAndQuery(path) == CacheKey(scheme: "http", authority: authority, pathAndQuery: path))
    }

    @Test(
        "RFC 9110 §5.1, §5.3: names match case-insensitively (letters only); lines combine with commas",
        arguments: [
            ("Accept-Encoding", "accept-encoding", true), ("ACCEPT", "accept", true), ("X-1", "x-1", true),
            ("X-[", "x-{", false), ("Host", "Hosts", false), ("é", "É", false),
        ])
    func caseInsensitiveNames(a: String, b: String, equal: Bool) {
        #expect(a.equalsIgnoringASCIICase(b) == equal)
        #expect(a.dropFirst(0).equalsIgnoringASCIICase(b.dropFirst(0)) == equal)
        var fields = HeaderFields([(a, "1")])
        #expect((fields.combined(b) != nil) == equal)
        fields.add(b, "2")
        #expect(fields.combined(a) == (equal ? "1, 2" : "1"))
        #expect(HeaderFields().combined(a) == nil)
    }
}
