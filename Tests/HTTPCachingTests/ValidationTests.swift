import HTTPCaching
import Testing

/// RFC 9111 §4.3 and RFC 9110 §13: validation, both upstream and for clients.
@Suite("RFC 9111 §4.3: validation")
struct ValidationTests {
    static let lastModified = HTTPDate.format(900_000)
    static let stored = response(
        200,
        [
            ("Date", epochDate), ("ETag", "\"v1\""), ("Last-Modified", lastModified), ("Cache-Control", "max-age=60"),
            ("Content-Length", "5"), ("Content-Type", "text/plain"), ("X-Old", "1"),
        ])

    @Test("§4.3.1 conditional request carries the ETag and Last-Modified, never Date")
    func conditionalHeaders() {
        let headers = Validation.conditionalHeaders(for: Self.stored)
        #expect(headers.map(\.0) == ["If-None-Match", "If-Modified-Since"])
        #expect(headers.map(\.1) == ["\"v1\"", Self.lastModified])
        let noValidators = response(200, [("Date", epochDate)])
        #expect(Validation.conditionalHeaders(for: noValidators).isEmpty)
    }

    @Test("§4.3.4 a 304 selects by strong tag, weak tag, Last-Modified or as the only response")
    func selection() {
        #expect(Validation.notModifiedSelects(Self.stored, notModifiedHeaders: HeaderFields([("ETag", "\"v1\"")])))
        #expect(!Validation.notModifiedSelects(Self.stored, notModifiedHeaders: HeaderFields([("ETag", "\"v2\"")])))
        #expect(Validation.notModifiedSelects(Self.stored, notModifiedHeaders: HeaderFields([("ETag", "W/\"v1\"")])))
        #expect(Validation.notModifiedSelects(Self.stored, notModifiedHeaders: HeaderFields()))
    }

    @Test("§3.2 a 304 updates stored fields except those describing the body")
    func update() {
        let notModified = HeaderFields([
            ("Cache-Control", "max-age=120"), ("Content-Length", "0"), ("X-New", "2"), ("X-Old", "3"),
            ("Date", HTTPDate.format(1_000_050)), ("Connection", "close"), ("Content-Encoding", "gzip"),
        ])
        let updated = Validation.updated(
            Self.stored, withNotModified: notModified, requestTime: 1_000_049, responseTime: 1_000_050)
        #expect(updated.headers["Cache-Control"] == "max-age=120")
        #expect(updated.headers["Content-Length"] == "5")
        // RFC 9111 §3.2 excepts only Content-Length (and hop-by-hop fields) from the update.
        #expect(updated.headers["Content-Encoding"] == "gzip")
        #expect(updated.headers.values("X-Old") == ["3"])
        #expect(updated.headers["X-New"] == "2")
        #expect(updated.headers["Connection"] == nil)
        #expect(updated.responseTime == 1_000_050)
        #expect(updated.status == 200)
    }

    @Test(
        "RFC 9110 §13.2.2 client preconditions answered from storage",
        arguments: [
            ("GET", [("If-None-Match", "\"v1\"")], ConditionalOutcome.notModified),
            ("GET", [("If-None-Match", "W/\"v1\"")], .notModified),
            ("GET", [("If-None-Match", "\"v0\", \"v1\"")], .notModified),
            ("GET", [("If-None-Match", "*")], .notModified),
            ("GET", [("If-None-Match", "\"v2\"")], .proceed),
            ("HEAD", [("If-None-Match", "\"v1\"")], .notModified),
            ("GET", [("If-Modified-Since", HTTPDate.format(950_000))], .notModified),
            ("GET", [("If-Modified-Since", HTTPDate.format(800_000))], .proceed),
            ("GET", [("If-Modified-Since", "garbage")], .proceed),
            // If-None-Match takes precedence over If-Modified-Since (§13.1.3).
            ("GET", [("If-None-Match", "\"v2\""), ("If-Modified-Since", HTTPDate.format(950_000))], .proceed),
            ("GET", [("If-Match", "\"v1\"")], .proceed),
            ("GET", [("If-Match", "\"v2\"")], .preconditionFailed),
            ("GET", [("If-Match", "W/\"v1\"")], .preconditionFailed),
            ("GET", [("If-Match", "*")], .proceed),
            ("GET", [("If-Unmodified-Since", HTTPDate.format(800_000))], .preconditionFailed),
            ("GET", [("If-Unmodified-Since", HTTPDate.format(950_000))], .proceed),
        ])
    func preconditions(method: String, fields: [(String, String)], expected: ConditionalOutcome) {
        #expect(
            Conditional.evaluate(method: method, requestHeaders: HeaderFields(fields), stored: Self.stored) == expected)
    }

    @Test("RFC 9110 §15.4.5 a 304 carries the 200's identity and freshness fields only")
    func notModifiedFields() {
        let headers = Conditional.notModifiedHeaders(from: Self.stored.headers)
        #expect(headers["ETag"] == "\"v1\"")
        #expect(headers["Cache-Control"] == "max-age=60")
        #expect(headers["Content-Length"] == nil)
        #expect(headers["X-Old"] == nil)
    }
}
