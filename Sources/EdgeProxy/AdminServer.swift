import CacheTransaction
import EdgeAdmin
import HTTPCaching
import Logging
import NIOCore
import NIOHTTP1
import OutpostConfig

/// One connection to the admin listener (separate from traffic): reads each request with its
/// body (up to `admin.max_body_size`) and writes the `AdminAPI`'s answer.
struct AdminConnection {
    let channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    let api: AdminAPI
    /// Admin connections drain with the traffic ones at shutdown (an idle keep-alive scraper
    /// must not hold the process up).
    let registry: ConnectionRegistry
    let logger: Logger

    /// Serves the connection until it closes. It was registered when accepted
    /// (``ConnectionRegistry/registerUntilClosed(_:)``).
    func run() async {
        let id = ObjectIdentifier(channel.channel)
        let peer = channel.channel.remoteAddress?.ipAddress
        do {
            try await channel.executeThenClose { inbound, outbound in
                var parts = inbound.makeAsyncIterator()
                while let part = try await parts.next() {
                    guard case .head(let head) = part else { continue }
                    registry.setBusy(id, true)
                    defer { registry.setBusy(id, false) }
                    let settings = api.settings().admin
                    let limit = settings.maxBodySize
                    let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
                    // A request without the token is answered 401 (and logged) before its body
                    // is read: an unauthenticated client cannot make the server read megabytes.
                    let unauthorized =
                        path != "/health"
                        && settings.token.map {
                            !AdminToken.authorizes(head.headers.first(name: "authorization"), token: $0)
                        }
                            ?? false
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
                            AdminRequest(
                                method: head.method.rawValue, path: path,
                                headers: HeaderFields(
                                    fields: head.headers.map { HeaderFields.Field(name: $0.name, value: $0.value) }),
                                body: body, peer: peer))
                    }
                    let keepAlive = head.isKeepAlive && !tooLarge && !unauthorized && !registry.isDraining
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: response.contentType)
                    headers.add(name: "Content-Length", value: String(response.body.count))
                    headers.add(name: "Cache-Control", value: "no-store")
                    for (name, value) in response.headers { headers.add(name: name, value: value) }
                    if !keepAlive { headers.add(name: "Connection", value: "close") }
                    let status = HTTPResponseStatus(statusCode: response.status)
                    try await outbound.write(
                        .head(HTTPResponseHead(version: head.version, status: status, headers: headers)))
                    if head.method != .HEAD {
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: response.body))))
                    }
                    try await outbound.write(.end(nil))
                    if !keepAlive { break }
                }
            }
        } catch {
            logger.debug("admin connection ended", metadata: ["error": "\(error)"])
        }
    }
}
