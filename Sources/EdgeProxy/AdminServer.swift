import Logging
import NIOCore
import NIOHTTP1

/// The admin listener, separate from traffic. For now it answers `GET /health` only.
struct AdminConnection {
    let channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    let logger: Logger

    func run() async {
        do {
            try await channel.executeThenClose { inbound, outbound in
                for try await part in inbound {
                    guard case .head(let head) = part else { continue }
                    let (status, body) = answer(head)
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: "application/json")
                    headers.add(name: "Content-Length", value: String(body.utf8.count))
                    headers.add(name: "Cache-Control", value: "no-store")
                    if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
                    try await outbound.write(
                        .head(HTTPResponseHead(version: head.version, status: status, headers: headers)))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body))))
                    try await outbound.write(.end(nil))
                    if !head.isKeepAlive { break }
                }
            }
        } catch {
            logger.debug("admin connection ended", metadata: ["error": "\(error)"])
        }
    }

    private func answer(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        switch (head.method, path) {
        case (.GET, "/health"), (.HEAD, "/health"):
            return (.ok, "{\"status\":\"ok\"}\n")
        case (_, "/health"):
            return (.methodNotAllowed, "{\"error\":\"method not allowed\"}\n")
        default:
            return (.notFound, "{\"error\":\"no such admin route: \(path.filter { $0 != "\"" && $0 != "\\" })\"}\n")
        }
    }
}
