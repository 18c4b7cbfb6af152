import Testing

@testable import EdgeProxy

/// The connection timeout state machine, one event per line.
@Suite("EdgeProxy: connection timeouts")
struct ConnectionTimeoutStateTests {
    @Test("idle → reading a head → busy → idle, with the right timer each time")
    func lifecycle() {
        var state = ConnectionTimeoutState(idleTimeout: 60, headerTimeout: 10)
        #expect(state.start() == .arm(seconds: 60))
        #expect(state.bytesArrived() == .arm(seconds: 10))
        #expect(state.bytesArrived() == .none)
        #expect(state.headReceived() == .disarm)
        #expect(state.timerFired() == .none)
        #expect(state.bytesArrived() == .none)
        #expect(state.responseEnded() == .arm(seconds: 60))
        #expect(state.phase == .idle)
        #expect(state.timerFired() == .close)
    }

    @Test("a slow header section is answered 408 and closed when its timer fires")
    func slowHeader() {
        var state = ConnectionTimeoutState(idleTimeout: 60, headerTimeout: 10)
        _ = state.start()
        _ = state.bytesArrived()
        #expect(state.phase == .readingHead)
        #expect(state.timerFired() == .timedOut(.header))
    }

    @Test("a request body: its timer runs only while the server waits to read, and times out with 408")
    func body() {
        var state = ConnectionTimeoutState(idleTimeout: 60, headerTimeout: 10, bodyTimeout: 5)
        _ = state.bytesArrived()
        #expect(state.headReceived(expectsBody: true) == .disarm)
        #expect(state.phase == .readingBody)
        // Back-pressure: no read asked for, no timer, nothing fires.
        #expect(state.timerFired() == .timedOut(.body))
        #expect(state.readRequested() == .arm(seconds: 5))
        #expect(state.bodyArrived() == .disarm)
        #expect(state.readRequested() == .arm(seconds: 5))
        #expect(state.requestEnded() == .disarm)
        #expect(state.phase == .busy)
        #expect(state.readRequested() == .none)
        #expect(state.bodyArrived() == .none)
        #expect(state.timerFired() == .none)
        #expect(state.responseEnded() == .arm(seconds: 60))
    }

    @Test("a response that ends before the request body does: idle (with its timer) once the body ends")
    func answeredBeforeBodyEnded() {
        var state = ConnectionTimeoutState(idleTimeout: 60, headerTimeout: 10, bodyTimeout: 5)
        _ = state.bytesArrived()
        _ = state.headReceived(expectsBody: true)
        #expect(state.responseEnded() == .none)
        #expect(state.phase == .readingBody)
        #expect(state.readRequested() == .arm(seconds: 5))
        #expect(state.requestEnded() == .arm(seconds: 60))
        #expect(state.phase == .idle)
        #expect(state.bytesArrived() == .arm(seconds: 10))
    }

    @Test("a request without a body goes straight to busy; reads then start no timer")
    func noBody() {
        var state = ConnectionTimeoutState(idleTimeout: 60, headerTimeout: 10, bodyTimeout: 5)
        _ = state.bytesArrived()
        #expect(state.headReceived(expectsBody: false) == .disarm)
        #expect(state.phase == .busy)
        #expect(state.readRequested() == .none)
        #expect(state.requestEnded() == .none)
        #expect(state.phase == .busy)
    }

    @Test("a pipelined head while busy keeps the connection busy")
    func pipelined() {
        var state = ConnectionTimeoutState(idleTimeout: 60, headerTimeout: 10)
        _ = state.bytesArrived()
        _ = state.headReceived()
        #expect(state.headReceived() == .disarm)
        #expect(state.responseEnded() == .arm(seconds: 60))
        #expect(state.responseEnded() == .none)
    }
}

@Suite("EdgeProxy: request validation")
struct RequestValidationTests {
    static let manyFields: [(String, String)] = (0..<11).map { index -> (String, String) in ("X-\(index)", "v") }
    static let limits = RequestValidation.Limits(
        maxURILength: 100, maxHeaderBytes: 1000, maxHeaders: 10, maxRequestBodySize: 50)

    static func check(_ fields: [(String, String)], uri: String = "/", minor: Int = 1, method: String = "GET") -> Int? {
        RequestValidation.check(
            method: method, uri: uri, versionMajor: 1, versionMinor: minor, headers: .init(fields), limits: limits)?
            .status
    }

    struct Case: Sendable {
        var fields: [(String, String)]
        var uri: String
        var expected: Int?
        init(_ fields: [(String, String)], _ uri: String, _ expected: Int?) {
            self.fields = fields
            self.uri = uri
            self.expected = expected
        }
    }

    static let cases: [Case] = [
        Case([("Host", "h")], "/", nil),
        Case([("Host", "h"), ("Content-Length", "5"), ("Transfer-Encoding", "chunked")], "/", 400),
        Case([("Host", "h"), ("Content-Length", "5"), ("Content-Length", "6")], "/", 400),
        Case([("Host", "h"), ("Content-Length", "5, 5")], "/", nil),
        Case([("Host", "h"), ("Content-Length", "+5")], "/", 400),
        Case([("Host", "h"), ("Transfer-Encoding", "gzip, chunked")], "/", 400),
        Case([("Host", "h"), ("Transfer-Encoding", "Chunked")], "/", nil),
        Case([("Host", "h"), ("Content-Length", "51")], "/", 413),
        Case([("Host", "h"), ("X", "a\u{0}b")], "/", 400),
        Case([("Host", "h"), ("Bad Name", "a")], "/", 400),
        Case([("Host", "h h")], "/", 400),
        Case([], "/", 400),
        Case([("Host", "h")], "/" + String(repeating: "a", count: 200), 414),
        Case([("Host", "h"), ("X", String(repeating: "a", count: 2000))], "/", 431),
        Case(manyFields, "/", 431),
        Case([("Host", "h")], "nonsense", 400),
        Case([("Host", "h")], "http://example.com/a", nil),
    ]

    @Test("RFC 9112 §3, §6.3 and RFC 9110 §5.5 rejections", arguments: cases)
    func rejections(testCase: Case) {
        #expect(
            Self.check(testCase.fields, uri: testCase.uri) == testCase.expected, "\(testCase.fields) \(testCase.uri)")
    }

    @Test("HTTP/1.0 may omit Host but may not use Transfer-Encoding")
    func http10() {
        #expect(Self.check([], minor: 0) == nil)
        #expect(Self.check([("Transfer-Encoding", "chunked")], minor: 0, method: "POST") == 400)
    }
}
