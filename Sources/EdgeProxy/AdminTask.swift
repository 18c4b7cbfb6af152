import CacheTransaction
import EdgeAdmin
import HTTPCaching
import Logging
import NIOCore
import NIOHTTP1
import OutpostConfig

/// One request to the admin listener. Admin connections run on the same front end as traffic
/// (the listener, ``PassHandler`` and its task per request, the timeouts, the protocol error
/// handling and ``RequestValidation``); only the answer differs: this task reads the body (up
/// to `admin.max_body_size`) and writes what ``AdminAPI`` answers.
struct AdminTask {
    let api: AdminAPI
    let registry: ConnectionRegistry
    let logger: Logger

    /// Answers the request; its connection closes afterwards when the answer says so, or
    /// when a graceful shutdown has begun.
    func run(_ request: PassedRequest) async {
        let peer = request.channel.remoteAddress?.ipAddress
        var keepGoing = false
        do {
            keepGoing = try await serve(request, peer: peer)
        } catch {
            logger.debug("admin connection ended", metadata: ["peer": "\(peer ?? "-")", "error": "\(error)"])
        }
        request.ended(close: !keepGoing || registry.isDraining)
    }

    /// Answers one request; false when the connection must close afterwards.
    private func serve(_ request: PassedRequest, peer: String?) async throws -> Bool {
        let head = request.head
        let settings = api.settings()
        let headers = HeaderFields(nio: head.headers)
        // The traffic listener's checks of the request's framing and size; the body's limit is
        // admin.max_body_size, applied below once the token is checked.
        var limits = RequestValidation.Limits(settings.server)
        limits.maxRequestBodySize = .max
        if let rejection = RequestValidation.check(
            method: head.method.wireName, uri: head.uri, versionMajor: head.version.major,
            versionMinor: head.version.minor, headers: headers, limits: limits)
        {
            logger.notice(
                "rejected admin request",
                metadata: ["status": "\(rejection.status)", "reason": "\(rejection.reason)", "peer": "\(peer ?? "-")"])
            try await send(.error(rejection.status, rejection.reason), to: request, keepAlive: false)
            return false
        }
        let limit = settings.admin.maxBodySize
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        // A request without the token is answered 401 (and logged) before its body is read:
        // an unauthenticated client cannot make the server read megabytes.
        let unauthorized =
            path != "/health"
            && settings.admin.token.map { !AdminToken.authorizes(headers["Authorization"], token: $0) } ?? false
        let parts = request.parts.makeAsyncIterator()
        var body: [UInt8] = []
        var tooLarge = false
        reading: while !unauthorized, let next = try await parts.next() {
            switch next {
            case .body(let buffer):
                guard body.count + buffer.readableBytes <= limit else {
                    // Answer now and close: the rest is never read.
                    tooLarge = true
                    break reading
                }
                body += buffer.readableBytesView
            case .end: break reading
            case .head: throw ConnectionAbort(reason: "request head inside a body")
            }
        }
        let response: AdminResponse
        if tooLarge {
            logger.notice("admin request body too large", metadata: ["peer": "\(peer ?? "-")"])
            response = .error(413, "request body larger than admin.max_body_size (\(limit) bytes)")
        } else {
            response = await api.handle(
                AdminRequest(method: head.method.rawValue, path: path, headers: headers, body: body, peer: peer))
        }
        let keepAlive = head.isKeepAlive && !tooLarge && !unauthorized && !registry.isDraining
        try await send(response, to: request, keepAlive: keepAlive)
        return keepAlive
    }

    private func send(_ response: AdminResponse, to request: PassedRequest, keepAlive: Bool) async throws {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Cache-Control", value: "no-store")
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(
            version: request.head.version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        var parts: [HTTPServerResponsePart] = [.head(head)]
        if request.head.method != .HEAD { parts.append(.body(.byteBuffer(ByteBuffer(bytes: response.body)))) }
        parts.append(.end(nil))
        try await request.writer.yield(contentsOf: parts)
    }
}
