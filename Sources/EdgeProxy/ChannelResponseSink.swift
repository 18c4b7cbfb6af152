import CacheTransaction
import HTTPCaching
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// A ``ResponseSink`` writing to the client's channel. A class: the pipeline takes its sink
/// as `any ResponseSink`, and a reference fits the existential without a box to copy.
final class ChannelResponseSink: ResponseSink {
    let writer: PassHandler.Writer
    let version: HTTPVersion
    let keepAlive: Bool
    /// Remove Surrogate-Key and Cache-Tag (the origin's purge tags are for this cache only,
    /// unless `cache.expose_surrogate_keys`).
    let stripSurrogateKeys: Bool
    /// Writes an interim response head at once, ahead of the writer (see
    /// ``PassedRequest/interim(_:)``).
    let interim: (@Sendable (HTTPResponseHead) -> Void)?

    init(
        writer: PassHandler.Writer, version: HTTPVersion, keepAlive: Bool, stripSurrogateKeys: Bool = true,
        interim: (@Sendable (HTTPResponseHead) -> Void)? = nil
    ) {
        self.writer = writer
        self.version = version
        self.keepAlive = keepAlive
        self.stripSurrogateKeys = stripSurrogateKeys
        self.interim = interim
    }
    /// Set when the response cannot be delimited without closing (HTTP/1.0, no length).
    let mustClose = NIOLockedValueBox(false)
    /// Where the one response to this request is: a head not written yet (it goes out with
    /// the first body bytes or the end, so a streamed response's head and first bytes cost one
    /// write and one flush), a head written, or the whole response written.
    private let progress = NIOLockedValueBox(Progress.nothing)

    private enum Progress {
        case nothing
        case pendingHead(HTTPServerResponsePart)
        case headWritten
        case complete
    }

    /// A second response to one request, or bytes after its end: never written (the
    /// connection is cut instead, RFC 9112 §9.6: one response per request).
    struct SecondResponse: Error, CustomStringConvertible {
        var description: String { "a response to this request was already sent" }
    }

    func sendHead(status: Int, headers: HeaderFields) async throws {
        let head = HTTPServerResponsePart.head(makeHead(status: status, headers: headers))
        try progress.withLockedValue { progress in
            guard case .nothing = progress else { throw SecondResponse() }
            progress = .pendingHead(head)
        }
    }

    /// RFC 9110 §15.2: forwarded to an HTTP/1.1 client (never to HTTP/1.0) while the final
    /// response has not started, without hop-by-hop fields; 101 is never interim here.
    func sendInterim(status: Int, headers: HeaderFields) {
        guard let interim, (100..<200).contains(status), status != 101, version.major == 1, version.minor >= 1
        else { return }
        guard progress.withLockedValue({ if case .nothing = $0 { true } else { false } }) else { return }
        var fields = HTTPHeaders()
        for field in HopByHop.stripped(headers) {
            if stripSurrogateKeys && SurrogateKeys.isTagField(field.name) { continue }
            fields.add(name: field.name, value: field.value)
        }
        // NIO has no name for 103 (RFC 8297).
        let named = HTTPResponseStatus(statusCode: status)
        let reason = status == 103 ? "Early Hints" : named.reasonPhrase
        interim(
            HTTPResponseHead(
                version: version, status: HTTPResponseStatus(statusCode: status, reasonPhrase: reason),
                headers: fields))
    }

    func sendBody(_ buffer: ByteBuffer) async throws {
        if let head = try take(ending: false) {
            try await writer.yield(contentsOf: [head, .body(.byteBuffer(buffer))])
        } else {
            try await writer.yield(.body(.byteBuffer(buffer)))
        }
    }

    func sendEnd() async throws {
        if let head = try take(ending: true) {
            try await writer.yield(contentsOf: [head, .end(nil)])
        } else {
            try await writer.yield(.end(nil))
        }
    }

    /// The head still to write with the next part, after checking that a part may follow.
    private func take(ending: Bool) throws -> HTTPServerResponsePart? {
        try progress.withLockedValue { progress in
            switch progress {
            case .nothing, .complete: throw SecondResponse()
            case .pendingHead(let head):
                progress = ending ? .complete : .headWritten
                return head
            case .headWritten:
                if ending { progress = .complete }
                return nil
            }
        }
    }

    /// Head, body and end in one write, so a small response costs one flush (one syscall). A
    /// head set aside but not written yet is replaced (an error found before any byte went out);
    /// once a head was written, a second response is refused.
    func sendResponse(status: Int, headers: HeaderFields, body: ByteBuffer?) async throws {
        let head = HTTPServerResponsePart.head(makeHead(status: status, headers: headers))
        try progress.withLockedValue { progress in
            switch progress {
            case .nothing, .pendingHead: progress = .complete
            case .headWritten, .complete: throw SecondResponse()
            }
        }
        if let body, body.readableBytes > 0 {
            try await writer.yield(contentsOf: [head, .body(.byteBuffer(body)), .end(nil)])
        } else {
            try await writer.yield(contentsOf: [head, .end(nil)])
        }
    }

    private func makeHead(status: Int, headers: HeaderFields) -> HTTPResponseHead {
        let (head, closes) = ChannelResponseSink.head(
            status: status, headers: headers, version: version, keepAlive: keepAlive,
            stripSurrogateKeys: stripSurrogateKeys)
        if closes { mustClose.withLockedValue { $0 = true } }
        return head
    }

    /// The NIO response head for these fields (the hit path builds its heads with it too):
    /// purge tags stripped unless exposed, and `Connection` set for a connection that closes
    /// after the response or an HTTP/1.0 one kept alive. `closes` is true when the connection
    /// must close after it.
    static func head(
        status: Int, headers: HeaderFields, version: HTTPVersion, keepAlive: Bool, stripSurrogateKeys: Bool
    ) -> (head: HTTPResponseHead, closes: Bool) {
        var nioHeaders = HTTPHeaders()
        nioHeaders.reserveCapacity(headers.count + 1)
        for field in headers {
            if stripSurrogateKeys && SurrogateKeys.isTagField(field.name) { continue }
            nioHeaders.add(name: field.name, value: field.value)
        }
        // HTTP/2 (RFC 9113 §8.2.2): no connection-specific fields; a stream ends by itself.
        if version.major == 2 {
            return (
                HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: status), headers: nioHeaders),
                false
            )
        }
        let delimited = nioHeaders.contains(name: "Content-Length") || status == 204 || status == 304 || status < 200
        var closes = false
        if !keepAlive || (version.minor == 0 && !delimited) {
            closes = true
            nioHeaders.replaceOrAdd(name: "Connection", value: "close")
        } else if version.minor == 0 {
            nioHeaders.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        return (
            HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: status), headers: nioHeaders),
            closes
        )
    }
}
