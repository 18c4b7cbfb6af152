// Outpost sample origin: a small, fast HTTP/1.1 origin server used for demos,
// integration testing and benchmarking the Outpost edge cache.
//
// It deliberately depends only on NIOCore, NIOPosix and NIOHTTP1 so it builds
// quickly and has no moving parts beyond the event loops.

import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - /size/N bodies

// Shared state lives in static properties of namespaces rather than top-level
// variables: top-level variables in main.swift are main-actor isolated in Swift 6,
// but this state is read from every event loop thread.

enum SizeBody {
    /// Largest body `/size/N` will produce. Bounded so a typo cannot make the
    /// origin stream for hours.
    static let maxLength = 100_000_000

    /// Bodies are streamed in slices of this size; a 100 MB body never exists
    /// in memory as a whole.
    static let chunkSize = 64 * 1024

    /// The repeating text bodies are made of. Deterministic content means a
    /// cache's copy can be compared byte-for-byte with a fresh origin response.
    static let pattern: [UInt8] = Array("outpost sample origin\n".utf8)

    /// One chunk worth of the pattern plus one extra repetition, so that a chunk
    /// starting at any phase of the pattern is a zero-copy slice of this buffer.
    /// It is never mutated after creation, so sharing it across event loops is safe.
    static let patternBuffer: ByteBuffer = {
        let length = chunkSize + pattern.count
        var buffer = ByteBufferAllocator().buffer(capacity: length)
        while buffer.readableBytes < length {
            let take = min(pattern.count, length - buffer.readableBytes)
            buffer.writeBytes(pattern[0..<take])
        }
        return buffer
    }()

    /// Returns `length` (at most `chunkSize`) body bytes starting at body offset `offset`.
    static func slice(offset: Int, length: Int) -> ByteBuffer {
        precondition(length <= chunkSize)
        return patternBuffer.getSlice(at: offset % pattern.count, length: length)!
    }
}

// MARK: - Process-wide request counter

/// Counts requests across all event loops for the `X-Origin-Request-Count`
/// header, which tests and the bench use to prove a response came from cache
/// (the count does not move) rather than from the origin.
///
/// A pthread mutex is used because this target intentionally does not depend on
/// NIOConcurrencyHelpers or swift-atomics, and `Synchronization.Atomic` would
/// require macOS 15 while the package still supports macOS 14. The critical
/// section is a single add, so contention is negligible even at benchmark rates.
final class RequestCounter: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: UInt64 = 0

    static let shared = RequestCounter()
    /// 304 responses, for `/counters`: the bench uses it to prove a cache revalidated.
    static let notModified = RequestCounter()

    init() {
        self.mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        self.mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(self.mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(self.mutex)
        self.mutex.deallocate()
    }

    func increment() -> UInt64 {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        self.value &+= 1
        return self.value
    }

    func read() -> UInt64 {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return self.value
    }
}

// MARK: - HTTP dates

enum HTTPDate {
    static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Formats seconds since the epoch as an IMF-fixdate (RFC 9110 §5.6.7),
    /// e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. Hand-rolled instead of Foundation's
    /// DateFormatter to keep the binary small and the hot path cheap.
    static func format(_ seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func twoDigits(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekdays[Int(parts.tm_wday)]), \(twoDigits(parts.tm_mday)) \(months[Int(parts.tm_mon)]) "
            + "\(parts.tm_year + 1900) \(twoDigits(parts.tm_hour)):\(twoDigits(parts.tm_min)):\(twoDigits(parts.tm_sec)) GMT"
    }

    /// Parses an IMF-fixdate back into seconds since the epoch. The obsolete
    /// RFC 850 and asctime formats are not accepted: current clients and caches
    /// echo our own Last-Modified, and an unparseable If-Modified-Since is
    /// simply ignored, so the worst case is a full 200 instead of a 304.
    static func parse(_ string: String) -> Int? {
        let fields = string.split(separator: " ")
        guard fields.count == 6, fields[5] == "GMT",
            let day = Int32(fields[1]),
            let monthIndex = months.firstIndex(where: { $0 == fields[2] }),
            let year = Int32(fields[3])
        else { return nil }
        let clock = fields[4].split(separator: ":")
        guard clock.count == 3, let hour = Int32(clock[0]), let minute = Int32(clock[1]),
            let second = Int32(clock[2])
        else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = Int32(monthIndex)
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        return Int(timegm(&parts))
    }
}

// MARK: - Static content

/// FNV-1a, used only to derive stable ETags from content; not security relevant.
func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash &*= 0x0000_0100_0000_01b3
    }
    return hash
}

func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
}

/// The index page. A static property rather than a top-level constant for the
/// same isolation reason as `SizeBody`.
enum IndexPage {
    static let html = """
        <!DOCTYPE html>
        <html lang="en">
        <head><meta charset="utf-8"><title>Outpost sample origin</title></head>
        <body>
        <h1>Outpost sample origin</h1>
        <p>This is the sample origin server that ships with Outpost, a caching CDN edge node.
        Put Outpost in front of it to see caching in action; every response carries an
        <code>X-Origin-Request-Count</code> header, so a cached response is recognisable by a count that
        does not change.</p>
        <ul>
        <li><code>/</code> &mdash; this page (<code>max-age=60</code>, ETag, Last-Modified)</li>
        <li><code>/size/N</code> &mdash; N bytes of deterministic text, up to 100000000 (<code>max-age=3600</code>)</li>
        <li><code>/time</code> &mdash; the current time (<code>max-age=5</code>)</li>
        <li><code>/nocache</code> &mdash; a response that must not be stored (<code>no-store</code>)</li>
        <li><code>/vary</code> &mdash; echoes <code>Accept-Language</code> (<code>Vary: Accept-Language</code>)</li>
        <li><code>/vary-encoding/N</code> &mdash; N bytes of text, never coded, with
        <code>Vary: Accept-Encoding</code> (<code>max-age=3600</code>)</li>
        <li><code>/revalidate/N</code> &mdash; N bytes of text that caches must revalidate on every use
        (<code>max-age=0</code>, ETag, Last-Modified; <code>304</code> to a matching conditional)</li>
        <li><code>/counters</code> &mdash; requests served and 304s sent so far (<code>no-store</code>)</li>
        <li><code>/status/NNN</code> &mdash; a response with status NNN (<code>max-age=60</code>)</li>
        </ul>
        <p>Anything else is a 404 cacheable for 10 seconds.</p>
        </body>
        </html>

        """
}

/// Immutable, process-wide facts shared by every connection.
struct OriginConfig: Sendable {
    /// Start time doubles as Last-Modified: content is generated deterministically,
    /// so "unchanged since the process started" is accurate.
    let startTime: Int
    let startTimeHTTPDate: String
    let indexBody: ByteBuffer
    let indexETag: String

    init() {
        self.startTime = Int(time(nil))
        self.startTimeHTTPDate = HTTPDate.format(self.startTime)
        self.indexBody = ByteBuffer(string: IndexPage.html)
        self.indexETag = "\"index-\(hex(fnv1a(IndexPage.html.utf8)))\""
    }
}

// MARK: - Routing

/// A response before framing: routes describe *what* to send; the handler
/// decides how (304, HEAD, streaming, keep-alive).
struct Reply {
    enum Body {
        case bytes(ByteBuffer)
        /// `length` bytes of the size pattern, generated while streaming.
        case pattern(length: Int)
    }

    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: Body
    /// Validators that conditional requests are evaluated against.
    var etag: String? = nil
    var lastModified: Int? = nil

    init(
        _ status: HTTPResponseStatus,
        cacheControl: String,
        contentType: String = "text/plain; charset=utf-8",
        body: Body
    ) {
        self.status = status
        self.headers = HTTPHeaders([("Content-Type", contentType), ("Cache-Control", cacheControl)])
        self.body = body
    }

    init(_ status: HTTPResponseStatus, cacheControl: String, text: String) {
        self.init(status, cacheControl: cacheControl, body: .bytes(ByteBuffer(string: text)))
    }

    var contentLength: Int {
        switch self.body {
        case .bytes(let buffer): return buffer.readableBytes
        case .pattern(let length): return length
        }
    }
}

/// Strips the query string (the bench appends `?r=N` to force cache misses) and,
/// for absolute-form request targets, the scheme and authority.
func routingPath(_ uri: String) -> Substring {
    var target = Substring(uri)
    if let query = target.firstIndex(of: "?") {
        target = target[..<query]
    }
    if target.hasPrefix("http://") || target.hasPrefix("https://") {
        let afterScheme = target[target.index(target.firstIndex(of: ":")!, offsetBy: 3)...]
        target = afterScheme.firstIndex(of: "/").map { afterScheme[$0...] } ?? "/"
    }
    return target
}

func route(_ request: HTTPRequestHead, config: OriginConfig) -> Reply {
    guard request.method == .GET || request.method == .HEAD else {
        var reply = Reply(.methodNotAllowed, cacheControl: "no-store", text: "only GET and HEAD are supported\n")
        reply.headers.add(name: "Allow", value: "GET, HEAD")
        return reply
    }

    let path = routingPath(request.uri)
    switch path {
    case "/":
        var reply = Reply(
            .ok,
            cacheControl: "public, max-age=60",
            contentType: "text/html; charset=utf-8",
            body: .bytes(config.indexBody)
        )
        reply.etag = config.indexETag
        reply.lastModified = config.startTime
        return reply

    case "/time":
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let millis = Int(now.tv_sec) * 1000 + Int(now.tv_nsec) / 1_000_000
        return Reply(.ok, cacheControl: "max-age=5", text: "\(HTTPDate.format(Int(now.tv_sec)))\nunix_ms=\(millis)\n")

    case "/counters":
        // Read by tools/bench straight from the origin (not through a cache) before and after
        // each run, to check that hits were hits and revalidations were answered with a 304.
        let requests = RequestCounter.shared.read()
        let notModified = RequestCounter.notModified.read()
        return Reply(.ok, cacheControl: "no-store", text: "requests \(requests)\nnot_modified \(notModified)\n")

    case "/nocache":
        return Reply(.ok, cacheControl: "no-store", text: "this response must never be stored by a cache\n")

    case "/vary":
        let languages = request.headers["Accept-Language"].joined(separator: ", ")
        var reply = Reply(
            .ok,
            cacheControl: "public, max-age=60",
            text: "Accept-Language: \(languages.isEmpty ? "(none)" : languages)\n"
        )
        reply.headers.add(name: "Vary", value: "Accept-Language")
        // One ETag per variant, so revalidation of each stored variant works.
        reply.etag = "\"vary-\(hex(fnv1a(languages.utf8)))\""
        return reply

    default:
        if path.hasPrefix("/size/") {
            guard let size = bodySize(path.dropFirst("/size/".count)) else { return badSizeReply() }
            var reply = Reply(
                .ok,
                cacheControl: "public, max-age=3600",
                contentType: "text/plain",
                body: .pattern(length: size)
            )
            reply.etag = "\"size-\(size)\""
            reply.lastModified = config.startTime
            return reply
        }
        if path.hasPrefix("/revalidate/") {
            guard let size = bodySize(path.dropFirst("/revalidate/".count)) else { return badSizeReply() }
            // Stale at once, so a cache revalidates every request and the origin answers
            // a matching If-None-Match / If-Modified-Since with a 304 (see `isNotModified`).
            var reply = Reply(
                .ok,
                cacheControl: "max-age=0",
                contentType: "text/plain",
                body: .pattern(length: size)
            )
            // nginx does not store a response with max-age=0, so it would never revalidate
            // one. Its own X-Accel-Expires with a time in the past (meaningless to other
            // caches) makes it store the response already expired; nginx only lets it
            // override Cache-Control when it comes first. The 304s carry it too, so the
            // stored copy stays expired and every request is revalidated again.
            reply.headers = HTTPHeaders([
                ("Content-Type", "text/plain"), ("X-Accel-Expires", "@1"), ("Cache-Control", "max-age=0"),
            ])
            reply.etag = "\"revalidate-\(size)\""
            reply.lastModified = config.startTime
            return reply
        }
        if path.hasPrefix("/vary-encoding/") {
            guard let size = bodySize(path.dropFirst("/vary-encoding/".count)) else { return badSizeReply() }
            // Always the identity coding, whatever Accept-Encoding says, but declared to
            // vary by it: caches keep (or look up) a variant per Accept-Encoding.
            var reply = Reply(
                .ok,
                cacheControl: "public, max-age=3600",
                contentType: "text/plain",
                body: .pattern(length: size)
            )
            reply.headers.add(name: "Vary", value: "Accept-Encoding")
            reply.etag = "\"vary-encoding-\(size)\""
            reply.lastModified = config.startTime
            return reply
        }
        if path.hasPrefix("/status/") {
            let digits = path.dropFirst("/status/".count)
            // 1xx are interim responses and cannot be sent as a final one.
            guard digits.count == 3, let code = Int(digits), (200...599).contains(code) else {
                return Reply(.badRequest, cacheControl: "no-store", text: "status must be between 200 and 599\n")
            }
            let status = HTTPResponseStatus(statusCode: code)
            return Reply(status, cacheControl: "max-age=60", text: "status \(code) \(status.reasonPhrase)\n")
        }
        return Reply(.notFound, cacheControl: "max-age=10", text: "not found: \(path)\n")
    }
}

/// The N of `/size/N` and the other sized routes, when it is a valid body size.
func bodySize(_ digits: Substring) -> Int? {
    guard !digits.isEmpty, digits.count <= 9, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
        let size = Int(digits), size <= SizeBody.maxLength
    else { return nil }
    return size
}

func badSizeReply() -> Reply {
    Reply(.badRequest, cacheControl: "no-store", text: "size must be an integer between 0 and \(SizeBody.maxLength)\n")
}

/// RFC 9110 §13.1.2: If-None-Match uses weak comparison, and `*` matches any
/// current representation.
func ifNoneMatchMatches(_ headerValues: [Substring], etag: String) -> Bool {
    func opaqueTag(_ tag: Substring) -> Substring {
        tag.hasPrefix("W/") ? tag.dropFirst(2) : tag
    }
    let ours = opaqueTag(Substring(etag))
    return headerValues.contains { $0 == "*" || opaqueTag($0) == ours }
}

/// Evaluates the request's preconditions (RFC 9110 §13.2.2 order): If-None-Match
/// wins; If-Modified-Since is only consulted when If-None-Match is absent.
func isNotModified(_ request: HTTPRequestHead, reply: Reply) -> Bool {
    guard reply.status == .ok else { return false }
    let ifNoneMatch = request.headers[canonicalForm: "If-None-Match"]
    if !ifNoneMatch.isEmpty {
        guard let etag = reply.etag else { return false }
        return ifNoneMatchMatches(ifNoneMatch, etag: etag)
    }
    if let lastModified = reply.lastModified,
        let since = request.headers.first(name: "If-Modified-Since"),
        let sinceSeconds = HTTPDate.parse(since)
    {
        return lastModified <= sinceSeconds
    }
    return false
}

// MARK: - Connection handler

/// Serves one connection. `HTTPServerPipelineHandler` (installed by
/// `configureHTTPServerPipeline`) holds back pipelined requests until the
/// previous response's `.end` is written, so at most one response is in flight
/// and the streaming state below never has to queue.
final class OriginHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private struct StreamState {
        var offset: Int
        let length: Int
        let keepAlive: Bool
    }

    private let config: OriginConfig
    private var request: HTTPRequestHead?
    private var streaming: StreamState?
    /// The Date header only changes once a second; caching it per connection
    /// keeps formatting off the hot path for keep-alive benchmarks.
    private var cachedDate: (second: Int, value: String) = (-1, "")

    init(config: OriginConfig) {
        self.config = config
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.request = head
        case .body:
            // Request bodies are irrelevant to every route; discard them.
            break
        case .end:
            guard let head = self.request else { return }
            self.request = nil
            self.respond(to: head, context: context)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, self.streaming != nil {
            self.pump(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Stop generating a body nobody will receive.
        self.streaming = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.streaming = nil
        context.close(promise: nil)
    }

    private func currentDate() -> String {
        let now = Int(time(nil))
        if self.cachedDate.second != now {
            self.cachedDate = (now, HTTPDate.format(now))
        }
        return self.cachedDate.value
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let count = RequestCounter.shared.increment()
        let reply = route(request, config: self.config)
        let keepAlive = request.isKeepAlive

        var headers = reply.headers
        headers.add(name: "Date", value: self.currentDate())
        headers.add(name: "Server", value: "outpost-sample-origin")
        headers.add(name: "X-Origin-Request-Count", value: String(count))
        if let etag = reply.etag {
            headers.add(name: "ETag", value: etag)
        }
        if let lastModified = reply.lastModified {
            headers.add(
                name: "Last-Modified",
                value: lastModified == self.config.startTime
                    ? self.config.startTimeHTTPDate : HTTPDate.format(lastModified))
        }
        // HTTP/1.0 defaults to close and HTTP/1.1 to keep-alive; only the
        // non-default choice needs to be spelled out.
        if request.version.major == 1, request.version.minor == 0, keepAlive {
            headers.add(name: "Connection", value: "keep-alive")
        } else if !keepAlive {
            headers.add(name: "Connection", value: "close")
        }

        if isNotModified(request, reply: reply) {
            _ = RequestCounter.notModified.increment()
            // A 304 carries the validators and caching headers but no body;
            // NIO's encoder strips the framing headers for 304 itself.
            headers.remove(name: "Content-Type")
            context.write(
                self.wrapOutboundOut(
                    .head(
                        HTTPResponseHead(
                            version: request.version, status: .notModified, headers: headers))), promise: nil)
            self.finish(context: context, keepAlive: keepAlive)
            return
        }

        if reply.status.mayHaveResponseBody {
            headers.add(name: "Content-Length", value: String(reply.contentLength))
        } else {
            // e.g. /status/204: there is no content to describe.
            headers.remove(name: "Content-Type")
        }
        context.write(
            self.wrapOutboundOut(
                .head(
                    HTTPResponseHead(
                        version: request.version, status: reply.status, headers: headers))), promise: nil)

        // HEAD responses keep Content-Length but have no body; the encoder
        // would reject body parts for them.
        let hasBody = request.method != .HEAD && reply.status.mayHaveResponseBody && reply.contentLength > 0
        guard hasBody else {
            self.finish(context: context, keepAlive: keepAlive)
            return
        }

        switch reply.body {
        case .bytes(let buffer):
            context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            self.finish(context: context, keepAlive: keepAlive)
        case .pattern(let length):
            self.streaming = StreamState(offset: 0, length: length, keepAlive: keepAlive)
            self.pump(context: context)
        }
    }

    /// Writes body chunks while the channel is writable, then flushes. When the
    /// outbound buffer passes its high watermark the channel turns unwritable
    /// and `channelWritabilityChanged` resumes pumping once it drains, so memory
    /// stays bounded by the watermark no matter how large the body is.
    private func pump(context: ChannelHandlerContext) {
        while var state = self.streaming, context.channel.isActive, context.channel.isWritable {
            let length = min(SizeBody.chunkSize, state.length - state.offset)
            let chunk = SizeBody.slice(offset: state.offset, length: length)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
            state.offset += length
            if state.offset == state.length {
                // Clear the state before writing `.end`: the pipeline handler may
                // deliver the next pipelined request re-entrantly from that write.
                self.streaming = nil
                self.finish(context: context, keepAlive: state.keepAlive)
                return
            }
            self.streaming = state
        }
        context.flush()
    }

    private func finish(context: ChannelHandlerContext, keepAlive: Bool) {
        if keepAlive {
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            // Close only once the response is on the wire; closing right away
            // would discard the queued writes.
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }
}

// MARK: - Command line

func printError(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { bytes in
        _ = write(2, bytes.baseAddress, bytes.count)
    }
}

func usage() -> String {
    """
    usage: outpost-sample-origin [--listen HOST:PORT]

      --listen HOST:PORT   address to listen on (default 127.0.0.1:8081; port 0 picks a free port,
                           IPv6 hosts are written in brackets, e.g. [::1]:8081)
      -h, --help           show this help
    """
}

/// Splits `HOST:PORT`, accepting `[v6addr]:PORT`.
func parseListenAddress(_ value: String) -> (host: String, port: Int)? {
    guard let colon = value.lastIndex(of: ":"), let port = Int(value[value.index(after: colon)...]),
        (0...65535).contains(port)
    else { return nil }
    var host = value[..<colon]
    if host.hasPrefix("["), host.hasSuffix("]") {
        host = host.dropFirst().dropLast()
    }
    guard !host.isEmpty else { return nil }
    return (String(host), port)
}

struct Options {
    var host = "127.0.0.1"
    var port = 8081
}

/// Hand-rolled so the target needs nothing beyond NIO; accepts both
/// `--listen VALUE` and `--listen=VALUE`.
func parseOptions(_ commandLine: [String]) -> Options {
    var options = Options()
    var arguments = commandLine.dropFirst()
    while let argument = arguments.popFirst() {
        var name = argument
        var inlineValue: String? = nil
        if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
            name = String(argument[..<equals])
            inlineValue = String(argument[argument.index(after: equals)...])
        }
        switch name {
        case "-h", "--help":
            print(usage())
            exit(0)
        case "--listen":
            guard let value = inlineValue ?? arguments.popFirst(), let address = parseListenAddress(value) else {
                printError("error: --listen expects HOST:PORT\n\n\(usage())")
                exit(2)
            }
            (options.host, options.port) = address
        default:
            printError("error: unknown argument '\(argument)'\n\n\(usage())")
            exit(2)
        }
    }
    return options
}

// MARK: - Server

func runServer(_ options: Options) async throws {
    let config = OriginConfig()
    let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.backlog, value: 1024)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        // A larger window than NIO's 32/64 KiB default lets several 64 KiB chunks
        // queue up, so big bodies stream without stalling after every chunk.
        .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 * 1024, high: 1024 * 1024))
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                    withPipeliningAssistance: true,
                    withErrorHandling: true
                )
                try channel.pipeline.syncOperations.addHandler(OriginHandler(config: config))
            }
        }

    let serverChannel = try await bootstrap.bind(host: options.host, port: options.port).get()

    let boundPort = serverChannel.localAddress?.port ?? options.port
    let displayHost = options.host.contains(":") ? "[\(options.host)]" : options.host
    print("sample origin listening on http://\(displayHost):\(boundPort)")
    // Scripts wait for this line (e.g. to learn the port when started with
    // port 0), and stdout is block-buffered when it is a pipe. fflush(nil)
    // flushes every stream without naming the C `stdout` global, which Swift 6
    // rejects as shared mutable state.
    fflush(nil)

    try await serverChannel.closeFuture.get()
}

let options = parseOptions(CommandLine.arguments)
do {
    try await runServer(options)
} catch {
    printError("error: sample origin on \(options.host):\(options.port) failed: \(error)")
    exit(1)
}
